"""Preemption: SIGTERM saves and exits 143, SIGKILL at any moment resumes to the same weights,
stale temp files are cleaned, one live run per directory, the launcher passes SIGTERM on."""
import glob
import os
import random
import re
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.checkpoint import read_meta
from ssd_nobias.preemption import RunLock, RunDirectoryInUse, StopRequest, remove_stale_temps
from ssd_nobias.synthetic import make_synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [sys.executable, "-u", os.path.join(ROOT, "scripts", "train_ssd.py"),
         "--config", os.path.join(ROOT, "configs", "demo_synthetic.yaml")]
LAUNCH = [sys.executable, "-u", os.path.join(ROOT, "scripts", "launch_dist.py")]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic(str(tmp_path_factory.mktemp("preempt") / "data"), train=16, val=2,
                          size=96, seed=4)["root"]


def overrides(data, out, **extra):
    """4 iterations per epoch of 4 images, on one CPU context."""
    values = {"data.root": data, "output_dir": out, "name": "p", "data.num_workers": 0,
              "train.batch_size": 4, "train.epochs": 3, "train.warmup_iters": 1,
              "train.log_interval": 1, "train.val_interval": 3, "train.save_interval": 3,
              "eval.batch_size": 2}
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def start(argv):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ENV, start_new_session=True)


def read_until(proc, pattern, seen):
    """Read proc's output into `seen` until a line matches; the match."""
    for line in iter(proc.stdout.readline, ""):
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError("ended before /%s/:\n%s" % (pattern, "".join(seen[-30:])))


def finish(proc, seen, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    seen.append(out)
    return proc.returncode, "".join(seen)


def params(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(path).items()}


def test_sigterm_mid_epoch_saves_the_step_reached_and_exits_143(data, tmp_path):
    out = str(tmp_path)
    proc, seen = start(TRAIN + overrides(data, out, **{"data.num_workers": 1})), []
    read_until(proc, r"epoch 1\.50 iter 6 ", seen)
    os.killpg(proc.pid, signal.SIGTERM)  # as Slurm does: the loader process gets it too
    code, text = finish(proc, seen)
    assert code == 128 + signal.SIGTERM, text[-3000:]
    stopped = re.search(r"stopped by SIGTERM at iteration (\d+) \(epoch 1\)", text)
    assert stopped, text[-3000:]
    iteration = int(stopped[1])
    assert 6 <= iteration < 8  # the step in flight is finished, no further epoch
    assert read_meta(os.path.join(out, "p-last.params"))["iteration"] == iteration
    assert "Traceback" not in text
    done = subprocess.run(TRAIN + overrides(data, out, **{"train.resume": "auto"}),
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from {out}/p-last.params: epoch 1, iteration {iteration}" in done.stdout
    assert read_meta(os.path.join(out, "p-last.params"))["iteration"] == 12


def test_sigkill_at_random_moments_then_resume_ends_bitwise_equal(data, tmp_path):
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    every_step = {"train.checkpoint_iters": 1, "train.epochs": 2}
    done = subprocess.run(TRAIN + overrides(data, straight, **every_step), capture_output=True,
                          text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rng = random.Random(7)
    kills = 0
    for target in (2, 3, 5, 7):  # kill somewhere in the step after `target` (a write included)
        proc, seen = start(TRAIN + overrides(data, killed, **every_step,
                                             **{"train.resume": "auto"})), []
        read_until(proc, rf" iter {target} ", seen)
        time.sleep(rng.uniform(0.0, 0.6))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        kills += proc.returncode == -signal.SIGKILL
    assert kills == 4
    done = subprocess.run(TRAIN + overrides(data, killed, **every_step,
                                            **{"train.resume": "auto"}),
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    want, got = params(os.path.join(straight, "p-last.params")), \
        params(os.path.join(killed, "p-last.params"))
    assert want.keys() == got.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert not glob.glob(os.path.join(killed, "*.tmp-*"))
    sidecars = glob.glob(os.path.join(killed, "p-*.json"))
    assert sidecars and all(read_meta(s[: -len(".json")] + ".params") for s in sidecars)


def test_stale_temp_files_go_and_a_live_writers_stay(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f"p-last.params.tmp-{dead}"
    live = tmp_path / f"p-best.params.tmp-{os.getpid()}"
    other = tmp_path / "notes.txt"
    for path in (stale, live, other):
        path.write_text("x")
    with caplog.at_level("INFO", logger="ssd_nobias"):
        assert remove_stale_temps(str(tmp_path)) == [stale.name]
    assert not stale.exists() and live.exists() and other.exists()
    assert any(stale.name in r.getMessage() for r in caplog.records)


def test_a_second_run_on_a_live_run_directory_is_refused(data, tmp_path):
    out = str(tmp_path)
    with RunLock(out):
        with pytest.raises(RunDirectoryInUse, match=rf"in use by a live training run \(pid "
                                                    rf"{os.getpid()} on "):
            with RunLock(out):
                pass
        done = subprocess.run(TRAIN + overrides(data, out), capture_output=True, text=True,
                              env=ENV, timeout=300)
    assert done.returncode == 2 and "in use by a live training run" in done.stderr
    assert "Traceback" not in done.stderr
    with RunLock(out):  # released with its holder
        pass


def test_launcher_passes_sigterm_to_every_worker(data, tmp_path):
    out = str(tmp_path)
    proc, seen = start(LAUNCH + ["--local", "-n", "2", "--port", "0", "--"] + TRAIN +
                       overrides(data, out, **{"train.kvstore": "dist_sync",
                                               "train.epochs": 4})), []
    read_until(proc, r"\[rank 0\] epoch 1\.25 iter 5 ", seen)
    os.kill(proc.pid, signal.SIGTERM)
    code, text = finish(proc, seen)
    assert code == 128 + signal.SIGTERM, text[-3000:]
    assert "SIGTERM received and passed on to the workers, which ended with: exit status " \
           "143, exit status 143" in text
    stops = re.findall(r"^\[rank (\d)\] stopped by SIGTERM at iteration (\d+)", text, re.M)
    assert sorted(r for r, _ in stops) == ["0", "1"] and stops[0][1] == stops[1][1]
    assert read_meta(os.path.join(out, "p-last.params"))["iteration"] == int(stops[0][1])


def test_a_forked_loader_worker_neither_logs_nor_stops_on_sigterm(tmp_path):
    """Loader workers fork with the handler installed; the pool's shutdown SIGTERMs them."""
    import logging
    import multiprocessing

    log = logging.getLogger("ssd_nobias")
    handler = logging.FileHandler(tmp_path / "train.log")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with StopRequest() as stop:
            worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
            worker.start()
            time.sleep(0.2)
            os.kill(worker.pid, signal.SIGTERM)
            time.sleep(0.5)
            swallowed = worker.is_alive()
            worker.kill()
            worker.join()
            os.kill(os.getpid(), signal.SIGTERM)  # the training process itself still stops
            assert stop.requested
    finally:
        log.removeHandler(handler)
        handler.close()
    assert swallowed
    assert (tmp_path / "train.log").read_text().count("SIGTERM received") == 1
