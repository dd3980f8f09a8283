"""A finished run is never trained over by accident; a failed start leaves no trace."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from ssd_nobias.config import load_config
from ssd_nobias.engine.preemption import LOCK_FILE
from ssd_nobias.engine.run_dir import RunDirectoryTaken, StartGuard, claim, previous_run
from ssd_nobias.engine.metrics import read_metrics
from ssd_nobias.engine.train import train

from conftest import make_tiny_data, tiny_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "configs", "demo_synthetic.yaml")
TRAIN = [sys.executable, os.path.join(ROOT, "scripts", "train_ssd.py"), "--config", DEMO]


def overrides(data, out, *extra):
    """One epoch of 2 iterations of 4 images."""
    return tiny_overrides(data, out, "p", **{"train.epochs": 1, "eval.batch_size": 4}) + \
        list(extra)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory, "rundir", train=8, val=2, seed=2)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("finished") / "run")
    train(load_config(DEMO, overrides(data, out)))
    return out


def snapshot(folder):
    """Every file under folder with its bytes (the lock file: only that it is there; it names
    the last process that held it)."""
    found = {}
    for base, _, names in os.walk(folder):
        for name in names:
            if name == LOCK_FILE:
                found[name] = "present"
                continue
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


@pytest.mark.subprocess
def test_training_again_over_a_finished_run_is_refused_and_changes_nothing(data, finished,
                                                                          tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(finished, out)
    before = snapshot(out)
    done = subprocess.run(TRAIN + overrides(data, out, "train.epochs=2"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"output_dir '{out}' already holds a run: 3 checkpoint(s) (p-0001.params, " \
           f"p-best.params, p-last.params; newest at iteration 2) and metrics.csv" in done.stderr
    assert "train.resume=auto" in done.stderr and "--overwrite" in done.stderr
    assert snapshot(out) == before


@pytest.mark.slow
@pytest.mark.subprocess
def test_overwrite_removes_the_old_run_first_and_keeps_other_files(data, finished, tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(finished, out)
    os.makedirs(os.path.join(out, "export"))
    with open(os.path.join(out, "export", "model.onnx"), "w") as f:
        f.write("old export")
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("mine")
    done = subprocess.run(TRAIN + overrides(data, out, "name=q") + ["--overwrite"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    left = sorted(os.listdir(out))
    assert not [n for n in left if n.startswith("p-")] and "export" not in left
    assert "notes.txt" in left and "q-last.params" in left
    assert [r["iteration"] for r in read_metrics(out) if r["loss"]] == ["2"]
    with open(os.path.join(out, "train.log")) as f:
        log = f.read()
    assert "--overwrite: removed the previous run's " in log and "p-last.params" in log
    assert log.count("training ssd_300_mobilenet0.25_custom") == 1  # the old log went too


def test_resume_auto_continues_a_finished_run_in_place(finished, data, tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(finished, out)
    train(load_config(DEMO, overrides(data, out, "train.resume=auto", "train.epochs=2")))
    assert [r["iteration"] for r in read_metrics(out) if r["loss"]] == ["2", "4"]


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_start_that_fails_before_its_first_step_leaves_no_trace(data, finished, tmp_path):
    fresh = tmp_path / "new" / "run"
    done = subprocess.run(TRAIN + overrides(data, str(fresh), "train.ctx=[gpu7]"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "gpu7" in done.stderr
    assert not (tmp_path / "new").exists()
    out = str(tmp_path / "run")
    shutil.copytree(finished, out)
    before = snapshot(out)
    done = subprocess.run(TRAIN + overrides(data, out, "train.ctx=[gpu7]", "train.resume=auto",
                                            "train.epochs=2"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "gpu7" in done.stderr
    assert snapshot(out) == before  # no lock file, no log lines, no config rewritten


def test_the_guard_restores_only_a_failed_start(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "train.log").write_text("old\n")
    with pytest.raises(RuntimeError):
        with StartGuard(str(folder)):
            (folder / "train.log").write_text("old\nnew\n")
            (folder / "config.yaml").write_text("x")
            raise RuntimeError
    assert sorted(os.listdir(folder)) == ["train.log"]
    assert (folder / "train.log").read_text() == "old\n"
    with pytest.raises(RuntimeError):
        with StartGuard(str(folder)) as guard:
            (folder / "config.yaml").write_text("x")
            guard.started()
            raise RuntimeError  # after the first step: what the run wrote stays
    assert (folder / "config.yaml").exists()


def test_claim_lists_and_refuses(finished, tmp_path):
    assert previous_run(str(tmp_path)) == [] and claim(str(tmp_path), "", False) == []
    assert "metrics.csv" in previous_run(finished) and "p-last.states" in previous_run(finished)
    with pytest.raises(RunDirectoryTaken, match="already holds a run"):
        claim(finished, "", False)
    assert claim(finished, "auto", False) == []


def test_a_torn_checkpoint_still_counts_as_the_previous_runs(finished, tmp_path):
    """A checkpoint whose files no longer match its sidecar's CRCs (killed mid-write) is
    refused and removed like a whole one, so nothing of the old run stays mixed in."""
    out = str(tmp_path / "run")
    shutil.copytree(finished, out)
    with open(os.path.join(out, "p-last.params"), "r+b") as f:
        f.write(b"torn")
    with pytest.raises(RunDirectoryTaken, match="p-last.params; newest at iteration 2"):
        claim(out, "", False)
    removed = claim(out, "", True)
    assert {"p-last.params", "p-last.states", "p-last.json"} <= set(removed)
    assert not [n for n in os.listdir(out) if n.startswith("p-")]


def test_overwrite_removes_only_plain_files_of_the_run_folder_whatever_a_sidecar_names(
        finished, tmp_path):
    """A sidecar is data anyone can write: one naming '../victim', an absolute path or a link
    out of the folder marks the folder as taken, and --overwrite removes the sidecar, not
    what it names."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    victim_dir, victim_file = tmp_path / "victim", tmp_path / "victim.txt"
    victim_dir.mkdir()
    (victim_dir / "keep").write_text("mine")
    victim_file.write_text("mine too")
    os.symlink(victim_file, out / "link.params")
    (out / "hostile.json").write_text(json.dumps({
        "params": {"file": "../victim"}, "states": {"file": str(victim_file)},
        "iteration": "2"}))
    (out / "hostile2.json").write_text(json.dumps({"params": {"file": "link.params"},
                                                   "iteration": 1}))
    with pytest.raises(RunDirectoryTaken, match="already holds a run"):
        claim(str(out), "", False)
    removed = claim(str(out), "", True)
    assert {"hostile.json", "hostile2.json", "p-last.params"} <= set(removed)
    assert not {"../victim", str(victim_file), "link.params"} & set(removed)
    assert (victim_dir / "keep").read_text() == "mine"
    assert victim_file.read_text() == "mine too" and os.path.islink(out / "link.params")


def test_an_output_dir_that_cannot_be_created_is_one_line(data, tmp_path):
    """A file where a folder must go (as a read-only place: root ignores permissions, so the
    test uses a file in the way) ends in a StorageError naming the folder."""
    from ssd_nobias.errors import StorageError

    (tmp_path / "afile").write_text("x")
    out = str(tmp_path / "afile" / "run")
    with pytest.raises(StorageError, match=r"cannot create the folder .*afile/run: Not a "
                                           r"directory; choose one you can write"):
        train(load_config(DEMO, overrides(data, out)))
    done = subprocess.run(TRAIN + overrides(data, out), capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
