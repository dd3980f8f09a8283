"""Training on MXNet's parameter-server kvstore over the loopback, and the launcher around it."""
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from ssd_nobias.errors import UserError
from ssd_nobias.engine.launch import plan, read_hostfile
from ssd_nobias.engine.metrics import read_metrics

from conftest import make_tiny_data, tiny_overrides

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = [sys.executable, os.path.join(ROOT, "scripts", "launch_dist.py")]
TRAIN = [sys.executable, os.path.join(ROOT, "scripts", "train_ssd.py"),
         "--config", os.path.join(ROOT, "configs", "demo_synthetic.yaml")]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory, "dist", train=16, val=4, seed=1)


def overrides(data, out, **extra):
    return tiny_overrides(data, out, "d", **{
        "train.epochs": 3, "train.lr": 0.02, "train.log_interval": 1, "train.val_interval": 3,
        "eval.batch_size": 4, **extra})


def metrics(out):
    return [r for r in read_metrics(out) if r["loss"]]


def test_two_workers_stay_identical_and_follow_the_single_worker_schedule(data, tmp_path):
    dist_out, single_out = str(tmp_path / "dist"), str(tmp_path / "single")
    done = subprocess.run(LAUNCH + ["--local", "-n", "2", "-s", "1", "--port", "0", "--"] +
                          TRAIN + overrides(data, dist_out, **{"train.kvstore": "dist_sync"}),
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sums = re.findall(r"^\[rank (\d)\] rank \1 done at iteration 12; parameters sha256 (\w+)$",
                      done.stdout, re.M)
    assert sorted(rank for rank, _ in sums) == ["0", "1"]
    assert sums[0][1] == sums[1][1]  # weights and norm statistics, bitwise
    assert "batch 2 of 4" in done.stdout
    dist = metrics(dist_out)
    # What a dist run guarantees is above (identical workers) and below (the single-process
    # schedule); whether 12 iterations lower a noisy loss is float rounding's luck.
    assert len(dist) == 12 and all(math.isfinite(float(r["loss"])) for r in dist)

    done = subprocess.run(TRAIN + overrides(data, single_out), capture_output=True, text=True,
                          env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    single = metrics(single_out)
    assert [r["iteration"] for r in dist] == [r["iteration"] for r in single]
    assert [r["lr"] for r in dist] == [r["lr"] for r in single]
    assert os.path.isfile(os.path.join(dist_out, "d-last.params"))  # rank 0 checkpoints

    # one more epoch: both workers resume from rank 0's checkpoint and stay identical
    done = subprocess.run(LAUNCH + ["--local", "-n", "2", "--port", "0", "--"] + TRAIN +
                          overrides(data, dist_out, **{"train.kvstore": "dist_sync",
                                                       "train.epochs": 4,
                                                       "train.resume": "auto"}),
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(re.findall(r"^\[rank \d\] resumed from .*d-last\.params: epoch 3, iteration 12$",
                          done.stdout, re.M)) == 2
    sums = re.findall(r"done at iteration 16; parameters sha256 (\w+)$", done.stdout, re.M)
    assert len(sums) == 2 and sums[0] == sums[1]


def test_killing_a_worker_stops_the_run_and_leaves_no_process(data, tmp_path):
    out = str(tmp_path / "killed")
    launcher = subprocess.Popen(LAUNCH + ["--local", "-n", "2", "--port", "0", "--"] + TRAIN +
                                overrides(data, out, **{"train.kvstore": "dist_sync",
                                                        "train.epochs": 100}),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=ENV, start_new_session=True)
    pids, lines = {}, []
    try:
        for line in launcher.stdout:
            lines.append(line)
            started = re.match(r"\[launch\] started (.+) on \S+, pid (\d+)", line)
            if started:
                pids[started.group(1)] = int(started.group(2))
            if re.match(r"\[rank 0\] epoch \S+ iter 2 ", line):
                break
        os.kill(pids["worker #1"], signal.SIGKILL)
        rest, _ = launcher.communicate(timeout=120)  # a hang guard, not a speed requirement
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    output = "".join(lines) + rest
    assert launcher.returncode == 2, output[-3000:]
    assert re.search(r"error: (worker #1|rank \d) \(pid \d+\) failed: killed by SIGKILL", output)
    assert set(pids) == {"scheduler", "server 0", "worker #0", "worker #1"}
    assert _left_behind(out) == [], "processes left behind"


def _left_behind(out, deadline_s=30.0):
    """Processes whose command line names `out`, once those killed have gone (a SIGKILL is
    delivered asynchronously): polled until none is left or the deadline passes."""
    give_up = time.monotonic() + deadline_s
    while True:
        left = [pid for pid in os.listdir("/proc") if pid.isdigit() and
                out.encode() in _cmdline(pid)]
        if not left or time.monotonic() > give_up:
            return left
        time.sleep(0.05)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


ALLREDUCE = ("import mxnet as mx; kv = mx.kv.create('dist_sync'); "
             "print(f'ps-lite worker rank {kv.rank} of {kv.num_workers}', flush=True); "
             "kv.init(0, mx.nd.zeros(3)); kv.push(0, mx.nd.ones(3) * (kv.rank + 1)); "
             "out = mx.nd.zeros(3); kv.pull(0, out=out); print('sum', out.asnumpy().tolist())")


def test_hostfile_runs_every_process_through_ssh(tmp_path):
    """A stand-in ssh (runs the remote command here) shows what each host is sent."""
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text('#!/bin/sh\necho "host $1" >> "$(dirname "$0")/hosts.log"\n'
                        'exec sh -c "$2"\n')
    fake_ssh.chmod(0o755)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# two names for this machine\n127.0.0.1\nlocalhost\n")
    done = subprocess.run(LAUNCH + ["--hostfile", str(hostfile), "-n", "2", "--port", "0",
                                    "--ssh", str(fake_ssh), "--", sys.executable, "-c",
                                    ALLREDUCE], capture_output=True, text=True, env=ENV,
                          timeout=120, cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    summed = re.findall(r"^\[rank (\d)\] sum \[3\.0, 3\.0, 3\.0\]$", done.stdout, re.M)
    assert sorted(summed) == ["0", "1"]  # 1 + 2 from the two workers, on both
    hosts = (tmp_path / "hosts.log").read_text().split()
    assert sorted(hosts[1::2]) == ["127.0.0.1", "127.0.0.1", "127.0.0.1", "localhost"]


def test_plan_gives_each_process_its_role_and_the_scheduler_address():
    roles = plan(workers=3, servers=2, hosts=["10.0.0.1", "10.0.0.2"], port=9000)
    assert plan(1, 1, ["localhost"], 9000)[0].env["DMLC_PS_ROOT_URI"] == "127.0.0.1"
    assert [r.name for r in roles] == ["scheduler", "server 0", "server 1", "worker #0",
                                       "worker #1", "worker #2"]
    assert [r.host for r in roles] == ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.1",
                                       "10.0.0.2", "10.0.0.1"]
    for role in roles:
        assert role.env["DMLC_PS_ROOT_URI"] == "10.0.0.1"
        assert role.env["DMLC_PS_ROOT_PORT"] == "9000"
        assert (role.env["DMLC_NUM_SERVER"], role.env["DMLC_NUM_WORKER"]) == ("2", "3")
        assert role.env["DMLC_NODE_HOST"] == role.host
    assert [r.env["DMLC_ROLE"] for r in roles] == ["scheduler"] + ["server"] * 2 + ["worker"] * 3
    with pytest.raises(UserError, match="at least one worker"):
        plan(workers=0, servers=1, hosts=["h"], port=1)


def test_hostfile_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="missing"):
        read_hostfile(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n\n")
    with pytest.raises(UserError, match="empty.*no host"):
        read_hostfile(str(empty))


def test_a_batch_that_workers_cannot_share_is_refused_by_every_worker(data, tmp_path):
    done = subprocess.run(LAUNCH + ["--local", "-n", "2", "--port", "0", "--"] + TRAIN +
                          overrides(data, str(tmp_path), **{"train.kvstore": "dist_sync",
                                                            "train.batch_size": 3}),
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 2
    assert "'train.batch_size' (3) is the global batch: it must be divisible by workers x " \
           "contexts (2)" in done.stdout
