"""Atomic writes: the file is whole or untouched, and a temporary name says who wrote it."""
import json
import os
import time

import pytest

from ssd_nobias.atomic import (remove_stale_temps, replacing, temp_path, write_json, write_json_gz,
                               writer_pid)


def test_a_finished_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = str(tmp_path / "report.json")
    write_json(path, {"old": 1})
    write_json(path, {"new": [1, 2]})
    assert json.loads(open(path).read()) == {"new": [1, 2]}
    assert os.listdir(tmp_path) == ["report.json"]


def test_gzipped_json_reads_back_and_the_same_object_gives_the_same_bytes(tmp_path,
                                                                          monkeypatch):
    import gzip
    import time
    path = str(tmp_path / "matches.json.gz")
    held = {"run": [{"id": "a.jpg", "scores": [0.5, 0.25]}]}
    write_json_gz(path, held)
    first = open(path, "rb").read()
    with gzip.open(path, "rt") as f:
        assert json.load(f) == held
    monkeypatch.setattr(time, "time", lambda: 2e9)  # rewritten later, by another process
    monkeypatch.setattr(os, "getpid", lambda: 4321)
    write_json_gz(path, held)
    assert open(path, "rb").read() == first and os.listdir(tmp_path) == ["matches.json.gz"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = str(tmp_path / "curves.png")
    with open(path, "w") as f:
        f.write("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(path, ".png") as tmp:
            assert tmp.endswith(f".tmp-{os.getpid()}.png")
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("disk full")
    assert open(path).read() == "old" and os.listdir(tmp_path) == ["curves.png"]


def test_the_writer_is_read_back_from_a_temporary_name(tmp_path):
    assert writer_pid(temp_path("/x/model.params")) == os.getpid()
    assert writer_pid(temp_path("/x/curves.png", ".png")) == os.getpid()
    assert writer_pid("/x/model.params") is None and writer_pid("/x/a.tmp-x") is None
    # a writer killed mid-plot leaves <name>.tmp-<pid>.png; the next run removes it
    dead = 2 ** 22 + 1  # above Linux's pid_max default: no such process
    (tmp_path / f"curves.png.tmp-{dead}.png").write_text("torn")
    (tmp_path / f"metrics.csv.tmp-{os.getpid()}").write_text("mine, still writing")
    assert remove_stale_temps(str(tmp_path)) == [f"curves.png.tmp-{dead}.png"]


class FullFile:
    """A file on a full disk: the write fails as the kernel says it."""

    def __init__(self, path, mode="r"):
        self.f = open(path, mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        import errno
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_named_with_the_file_and_the_space_left(tmp_path, monkeypatch):
    from ssd_nobias import atomic
    from ssd_nobias.errors import StorageError, UserError
    path = str(tmp_path / "metrics.json")
    write_json(path, {"old": 1})
    monkeypatch.setattr(atomic, "open", FullFile, raising=False)
    with pytest.raises(StorageError, match=rf"cannot write {path}: No space left on device: its "
                                           r"file system has [\d.]+ MB free") as caught:
        write_json(path, {"new": 2})
    assert isinstance(caught.value, UserError)  # scripts print it without a traceback
    monkeypatch.undo()
    assert json.loads(open(path).read()) == {"old": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_checkpoint_cut_short_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    import mxnet as mx
    from mxnet import gluon
    from ssd_nobias.errors import StorageError
    from ssd_nobias.model.checkpoint import read_meta, save_checkpoint
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    prefix = str(tmp_path / "run-last")
    params = save_checkpoint(prefix, net, trainer, {"epoch": 1})
    before = {n: open(tmp_path / n, "rb").read() for n in os.listdir(tmp_path)}

    def short_write(path):  # what MXNet raises when fwrite writes less than asked
        open(path, "wb").write(b"half")
        raise mx.base.MXNetError("Check failed: std::fwrite(ptr, 1, size, fp_) == size: "
                                 "FileStream.Write incomplete")
    monkeypatch.setattr(trainer, "save_states", short_write)
    with pytest.raises(StorageError, match=rf"cannot write {prefix}\.states: the write was cut "
                                           r"short: its file system has [\d.]+ MB free, the "
                                           r"file needs about 32 bytes"):
        save_checkpoint(prefix, net, trainer, {"epoch": 2})
    assert {n: open(tmp_path / n, "rb").read() for n in os.listdir(tmp_path)} == before
    assert read_meta(params)["epoch"] == 1


def test_the_script_edge_prints_a_storage_error_without_a_traceback(capsys):
    from ssd_nobias import cli
    from ssd_nobias.errors import StorageError

    def main(argv):
        raise StorageError("cannot write runs/x/x-last.params: No space left on device")
    assert cli.run(main, []) == 2
    err = capsys.readouterr().err
    assert err == "error: cannot write runs/x/x-last.params: No space left on device\n"


def test_the_signal_guard_stops_its_own_process_and_lets_forked_workers_die_quietly():
    """A data loader's pool ends its workers with SIGTERM: a worker forked inside the guard
    must die of it as before (exit -15, nothing printed), while the guarded process unwinds."""
    import multiprocessing
    import signal

    from ssd_nobias.atomic import stopping_on_signals
    from ssd_nobias.errors import Stopped

    with stopping_on_signals():
        context = multiprocessing.get_context("fork")
        ready = context.Event()
        worker = context.Process(target=_wait_for_sigterm, args=(ready,))
        worker.start()
        assert ready.wait(30)
        worker.terminate()  # SIGTERM
        worker.join(30)
        assert worker.exitcode == -signal.SIGTERM
        with pytest.raises(Stopped, match="stopped by SIGTERM") as stopped:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs as the call returns
        assert stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _wait_for_sigterm(ready):
    ready.set()
    while True:
        time.sleep(0.05)


def test_a_default_folder_that_is_taken_gets_the_next_number(tmp_path):
    from ssd_nobias.atomic import numbered_folder
    base = str(tmp_path / "eval")
    assert numbered_folder(base) == base
    os.makedirs(base)
    assert numbered_folder(base) == base + "2"
    os.makedirs(base + "2")
    (tmp_path / "eval3").write_text("a file takes the name too")
    assert numbered_folder(base) == base + "4"
