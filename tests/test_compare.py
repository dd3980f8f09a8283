"""Runs side by side (ssd_nobias/engine/compare.py and `ssd-nobias compare`): each run's best
and last val metric, loss and speed read from its files, and one picture of all curves."""
import csv
import json
import os

import pytest

from conftest import DEMO_CONFIG
from ssd_nobias.commands import compare
from ssd_nobias.config import load_config, save_config
from ssd_nobias.engine.compare import compare_runs, run_names
from ssd_nobias.engine.train import CSV_FIELDS
from ssd_nobias.errors import DataError


def fake_run(folder, lr, vals, speed):
    """A run directory as training leaves it: config.yaml and metrics.csv with a loss row
    per half epoch and a val row per epoch."""
    os.makedirs(folder)
    save_config(load_config(DEMO_CONFIG, [f"train.lr={lr}", "train.epochs=4"]),
                os.path.join(folder, "config.yaml"))
    with open(os.path.join(folder, "metrics.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        for k, val in enumerate(vals, 1):
            for half in (0.5, 1.0):
                writer.writerow({"epoch": k - 1 + half, "iteration": int(2 * (k - 1 + half)),
                                 "loss": 10.0 / (k + half), "lr": lr, "images_per_s": speed})
            writer.writerow({"epoch": float(k), "iteration": 2 * k, "val_map": val})


def test_each_run_is_summarized_from_its_files(tmp_path):
    fake_run(str(tmp_path / "a" / "run"), 0.05, [0.2, 0.5, 0.4], 30.0)
    fake_run(str(tmp_path / "b" / "run"), 0.025, [0.1, 0.3], 12.0)
    (tmp_path / "c").mkdir()
    assert run_names([str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")]) == \
        [os.path.join("a", "run"), os.path.join("b", "run")]
    first, second = compare_runs([str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")])
    assert (first.best_val, first.best_epoch, first.last_val) == (0.5, 2.0, 0.4)
    assert (first.epochs_done, first.epochs_planned, first.lr) == (3.0, 4, 0.05)
    assert first.last_loss == pytest.approx(10 / 4) and first.images_per_s == 30.0
    assert (second.best_val, second.last_val, second.images_per_s) == (0.3, 0.3, 12.0)
    assert first.model == "ssd_300_mobilenet0.25_custom" and first.norm == "nobias"
    with pytest.raises(DataError, match="c has no metrics.csv"):
        compare_runs([str(tmp_path / "c")])


def test_the_command_prints_the_table_and_writes_picture_and_json(tmp_path, capsys):
    for name, lr in (("x", 0.05), ("y", 0.1)):
        fake_run(str(tmp_path / name), lr, [0.25, 0.5], 20.0)
    out = tmp_path / "cmp.png"
    assert compare.main([str(tmp_path / "x"), str(tmp_path / "y"), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert [line.split()[0] for line in table.splitlines()[1:3]] == ["x", "y"]
    assert out.read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "cmp.json") as f:
        rows = json.load(f)["runs"]
    assert [(r["name"], r["lr"], r["best_val"]) for r in rows] == [("x", 0.05, 0.5),
                                                                   ("y", 0.1, 0.5)]
