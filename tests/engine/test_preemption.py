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

from ssd_nobias.model.checkpoint import find_resume, read_meta
from ssd_nobias.atomic import remove_stale_temps
from ssd_nobias.engine.preemption import RunLock, RunDirectoryInUse, StopRequest

from conftest import make_tiny_data, tiny_overrides

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = [sys.executable, "-u", os.path.join(ROOT, "scripts", "train_ssd.py"),
         "--config", os.path.join(ROOT, "configs", "demo_synthetic.yaml")]
LAUNCH = [sys.executable, "-u", os.path.join(ROOT, "scripts", "launch_dist.py")]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory, "preempt", train=16, val=2, seed=4)


def overrides(data, out, **extra):
    """4 iterations per epoch of 4 images, on one CPU context."""
    return tiny_overrides(data, out, "p", **{
        "train.epochs": 3, "train.log_interval": 1, "train.val_interval": 3,
        "train.save_interval": 3, "eval.batch_size": 2, **extra})


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
    long_run = {"data.num_workers": 1, "train.epochs": 50}  # ends by the signal, at any speed
    proc, seen = start(TRAIN + overrides(data, out, **long_run)), []
    read_until(proc, r"epoch 1\.50 iter 6 ", seen)
    os.killpg(proc.pid, signal.SIGTERM)  # as Slurm does: the loader process gets it too
    code, text = finish(proc, seen)
    assert code == 128 + signal.SIGTERM, text[-3000:]
    stopped = re.search(r"stopped by SIGTERM at iteration (\d+) \(epoch (\d+)\)", text)
    assert stopped, text[-3000:]
    iteration, epoch = int(stopped[1]), int(stopped[2])
    assert iteration >= 6 and epoch == iteration // 4  # 4 iterations per epoch
    assert read_meta(os.path.join(out, "p-last.params"))["iteration"] == iteration
    assert "Traceback" not in text
    epochs = epoch + 1  # the resumed run finishes the epoch it stopped in
    done = subprocess.run(TRAIN + overrides(data, out, **{"train.resume": "auto",
                                                          "train.epochs": epochs}),
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from {out}/p-last.params: epoch {epoch}, iteration {iteration}" in \
        done.stdout
    assert read_meta(os.path.join(out, "p-last.params"))["iteration"] == 4 * epochs


def test_sigkill_at_random_moments_then_resume_ends_bitwise_equal(data, tmp_path):
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    every_step = {"train.checkpoint_iters": 1, "train.epochs": 2}
    done = subprocess.run(TRAIN + overrides(data, straight, **every_step), capture_output=True,
                          text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rng = random.Random(7)
    kills = 0
    for round_ in range(8):
        # The resumed run starts after the newest checkpoint, so the first step it logs is the
        # one after the iteration its sidecar records, whatever a killed run managed to write.
        newest = find_resume(killed, "p")
        resumed_at = read_meta(newest)["iteration"] if newest else 0
        if resumed_at == 8:
            break
        proc, seen = start(TRAIN + overrides(data, killed, **every_step,
                                             **{"train.resume": "auto"})), []
        read_until(proc, rf" iter {resumed_at + 1} ", seen)
        # then somewhere in the steps and checkpoint writes that follow; the first round at once
        time.sleep(rng.uniform(0.0, 0.3) if round_ else 0.0)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it finished first
            pass
        proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), "".join(seen)[-3000:]
        kills += proc.returncode == -signal.SIGKILL
    assert kills >= 1
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
                                               "train.epochs": 50})), []
    read_until(proc, r"\[rank 0\] epoch 1\.25 iter 5 ", seen)
    os.kill(proc.pid, signal.SIGTERM)
    code, text = finish(proc, seen)
    assert code == 128 + signal.SIGTERM, text[-3000:]
    assert "SIGTERM received and passed on to the workers, which ended with: exit status " \
           "143, exit status 143" in text
    stops = re.findall(r"^\[rank (\d)\] stopped by SIGTERM at iteration (\d+)", text, re.M)
    assert sorted(r for r, _ in stops) == ["0", "1"] and stops[0][1] == stops[1][1]
    assert read_meta(os.path.join(out, "p-last.params"))["iteration"] == int(stops[0][1])


def _loader_worker(conn, stop):
    """Stand-in for a forked loader worker: ready, then wait to be told to quit, and report
    what its inherited StopRequest recorded."""
    conn.send("ready")
    conn.recv()  # the SIGTERM interrupts this read; its handler runs before the read resumes
    conn.send(stop.signum)


def test_a_forked_loader_worker_neither_logs_nor_stops_on_sigterm(tmp_path):
    """Loader workers fork with the handler installed; the pool's shutdown SIGTERMs them."""
    import logging
    import multiprocessing

    log = logging.getLogger("ssd_nobias")
    handler = logging.FileHandler(tmp_path / "train.log")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    fork = multiprocessing.get_context("fork")
    ours, theirs = fork.Pipe()
    try:
        with StopRequest() as stop:
            worker = fork.Process(target=_loader_worker, args=(theirs, stop))
            worker.start()
            assert ours.recv() == "ready"
            os.kill(worker.pid, signal.SIGTERM)
            ours.send("quit")
            recorded = ours.recv()
            worker.join(timeout=60)
            os.kill(os.getpid(), signal.SIGTERM)  # the training process itself still stops
            assert stop.requested
    finally:
        log.removeHandler(handler)
        handler.close()
    assert recorded is None and worker.exitcode == 0  # swallowed: it ran on to its end
    assert (tmp_path / "train.log").read_text().count("SIGTERM received") == 1
