"""Atomic writes: the file is whole or untouched, and a temporary name says who wrote it."""
import json
import os

import pytest

from ssd_nobias.atomic import replacing, temp_path, write_json, writer_pid
from ssd_nobias.engine.preemption import remove_stale_temps


def test_a_finished_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = str(tmp_path / "report.json")
    write_json(path, {"old": 1})
    write_json(path, {"new": [1, 2]})
    assert json.loads(open(path).read()) == {"new": [1, 2]}
    assert os.listdir(tmp_path) == ["report.json"]


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
