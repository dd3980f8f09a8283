"""Every command and snippet in README.md and the task pages under docs/ runs, on tiny
settings, so the docs cannot drift.

Shell blocks (```sh) run in order in a sandbox that looks like a checkout after `make demo` (the
demo recipe, printed by `make -n demo`, run first on a tiny dataset); `make` targets are
dry-run. `tiny()` shrinks each command without changing what it exercises: fewer images,
epochs, recalibration batches and COCO-like boxes, CPU contexts instead of GPUs, two workers
instead of four, the synthetic dataset in the layout the command's config expects (with COCO, a
model head for its 4 classes), a stand-in ssh that runs the remote command here. Python blocks
then run in one interpreter, in order, in the same sandbox. The install block (```bash) is
tests/test_package.py's: it builds the wheel and installs it into a fresh venv.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

from ssd_nobias.data.synthetic import make_synthetic

pytestmark = [pytest.mark.docs, pytest.mark.slow, pytest.mark.subprocess]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The README and the task pages, in reading order: shell blocks run in this order, Python
# blocks in one interpreter in this order.
PAGES = ["README.md"] + [os.path.join("docs", f"{name}.md") for name in (
    "getting-started", "training", "evaluate-and-detect", "export-and-deploy", "design", "gpus",
    "development")]
TINY_TRAIN = ("train.epochs=1 train.warmup_iters=1 train.log_interval=1 train.val_interval=1 "
              "train.batch_size=4 data.num_workers=0 eval.batch_size=2")
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def blocks(language: str):
    """The fenced blocks of a language in PAGES, in order."""
    found = []
    for page in PAGES:
        with open(os.path.join(ROOT, page)) as f:
            found += re.findall(rf"^```{language}\n(.*?)^```", f.read(), re.S | re.M)
    return found


def commands(script: str):
    """Shell commands of a block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", "", script)
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def tiny(command: str, sandbox: str) -> str:
    """The command on tiny settings, runnable in the sandbox (see the module docstring)."""
    command = re.sub(r"(^|\s)(\.venv/bin/)?python ", rf"\g<1>{sys.executable} ", command)
    if "make_synthetic_voc.py" in command:
        command = re.sub(r" --(train|val) \d+", "", command) + " --train 8 --val 4 --size 96"
    if "check_dataset.py" in command:
        command = command.replace("data.root=/data/voc", f"data.root={sandbox}/voc/VOCdevkit "
                                  "data.train_splits=[[2007,trainval]]")
    if "train_ssd.py" in command:
        command = re.sub(r"train\.ctx=\[gpu0,gpu1[^\]]*\]", "train.ctx=[cpu0,cpu1]", command)
        command = re.sub(r"train\.ctx=\[gpu0\]", "train.ctx=[cpu]", command)
        command = re.sub(r" train\.batch_size=\d+", "", command)
        command = command.replace("data.root=/data/voc", f"data.root={sandbox}/voc/VOCdevkit "
                                  "data.train_splits=[[2007,trainval]]")
        # the synthetic COCO set has 4 classes of its own: the _custom head takes them
        command = command.replace("data.root=/data/coco", f"data.root={sandbox}/coco "
                                  "data.train_splits=[instances_train] "
                                  "data.val_splits=[instances_val] "
                                  "model.name=ssd_300_mobilenet1.0_custom")
        if "_coco_" in command and "train.ctx" not in command:
            command += " train.ctx=[cpu0,cpu1]"
        if re.search(r"_(voc|custom)_nobias", command) and "train.ctx" not in command:
            command += " train.ctx=[cpu]"
        command += " " + TINY_TRAIN
    command = re.sub(r"--recalibrate \d+", "--recalibrate 2", command)
    command = re.sub(r"--coco-like \d+", "--coco-like 500", command)
    if "launch_dist.py" in command:
        command = command.replace(" -n 4 -s 2 ", " -n 2 -s 1 ")
        command = command.replace("launch_dist.py ", "launch_dist.py --port 0 ", 1)
        command = command.replace("--hostfile hosts.txt", f"--hostfile hosts.txt --ssh "
                                                          f"{sandbox}/ssh")
    return command


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A directory like a checkout after `make demo`, with data for every README command."""
    box = str(tmp_path_factory.mktemp("readme"))
    for name in ("configs", "scripts", "bench", "studies"):
        os.symlink(os.path.join(ROOT, name), os.path.join(box, name))
    make_synthetic(os.path.join(box, "voc"), train=4, val=2, size=96, layout="voc2007")
    make_synthetic(os.path.join(box, "coco"), train=4, val=2, size=96, fmt="coco")
    make_synthetic(os.path.join(box, "my_data"), train=4, val=2, size=96)
    with open(os.path.join(box, "hosts.txt"), "w") as f:
        f.write("127.0.0.1\n127.0.0.1\n")
    with open(os.path.join(box, "ssh"), "w") as f:  # `ssh HOST CMD` runs CMD here
        f.write('#!/bin/sh\nexec sh -c "$2"\n')
    os.chmod(os.path.join(box, "ssh"), 0o755)
    from gluoncv.model_zoo.mobilenet import MobileNet
    import mxnet as mx
    zoo = MobileNet(1.0)
    zoo.initialize()
    zoo(mx.nd.zeros((1, 3, 224, 224)))
    zoo.save_parameters(os.path.join(box, "mobilenet1.0.params"))
    demo = subprocess.run(["make", "-s", "-n", "-C", ROOT, "demo"], capture_output=True,
                          text=True)
    assert demo.returncode == 0, demo.stderr
    recipe = [c for c in commands(demo.stdout) if "scripts/" in c]
    assert len(recipe) == 6  # data, train, export, audit params, audit the INT8 graph, eval
    for command in recipe:
        run(command, box)
    shutil.copy(os.path.join(box, "data", "synthetic", "JPEGImages",
                             sorted(os.listdir(os.path.join(box, "data", "synthetic",
                                                            "JPEGImages")))[0]),
                os.path.join(box, "photo.jpg"))
    os.makedirs(os.path.join(box, "photos"))
    for name in ("a.jpg", "b.jpg"):  # pictures like those a deployed model will see
        shutil.copy(os.path.join(box, "photo.jpg"), os.path.join(box, "photos", name))
    return box


def run(command: str, sandbox: str) -> subprocess.CompletedProcess:
    runnable = tiny(command, sandbox)
    done = subprocess.run(["bash", "-c", runnable], cwd=sandbox, capture_output=True,
                          text=True, env=ENV, timeout=600)
    assert done.returncode == 0, f"README command failed:\n{command}\nran as:\n{runnable}\n" \
                                 f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def test_readme_shell_commands_run(sandbox):
    ran = 0
    for block in blocks("sh"):
        for command in commands(block):
            bare = re.sub(r"^(\w+=\S*\s+)+", "", command)  # VAR=value make ...
            if bare.startswith("make "):
                target = bare.split()[1]
                dry = subprocess.run(["make", "-n", "-C", ROOT, target], capture_output=True)
                assert dry.returncode == 0, command
            else:
                run(command, sandbox)
            ran += 1
    assert ran >= 15


def test_readme_python_snippets_run(sandbox):
    code = "\n".join(blocks("python"))
    done = subprocess.run([sys.executable, "-c", code], cwd=sandbox, capture_output=True,
                          text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_tiny_keeps_what_a_command_exercises():
    cmd = tiny("python scripts/train_ssd.py --config configs/ssd300_mobilenet1.0_voc_nobias.yaml "
               "data.root=/data/voc train.ctx=[gpu0,gpu1] train.batch_size=64", "/box")
    assert cmd.startswith(f"{sys.executable} scripts/train_ssd.py --config configs/ssd300_")
    assert "train.ctx=[cpu0,cpu1]" in cmd and "data.root=/box/voc/VOCdevkit" in cmd
    assert "batch_size=64" not in cmd and cmd.endswith(TINY_TRAIN)
