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
from ssd_nobias.engine.metrics import CSV_FIELDS
from ssd_nobias.errors import DataError
from ssd_nobias.plots import run_comparison_figure


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
    out = tmp_path / "cmp"
    assert compare.main([str(tmp_path / "x"), str(tmp_path / "y"), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert [line.split()[0] for line in table.splitlines()[1:3]] == ["x", "y"]
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    with open(out / "compare.json") as f:
        rows = json.load(f)["runs"]
    assert [(r["name"], r["lr"], r["best_val"]) for r in rows] == [("x", 0.05, 0.5),
                                                                   ("y", 0.1, 0.5)]


def test_the_default_output_is_a_new_folder_and_a_png_out_is_refused(tmp_path, capsys,
                                                                       monkeypatch):
    fake_run(str(tmp_path / "x"), 0.05, [0.25], 20.0)
    monkeypatch.chdir(tmp_path)
    for folder in ("compare", "compare2"):  # a default output never replaces an earlier one
        assert compare.main(["x"]) == 0
        assert (tmp_path / folder / "compare.json").is_file()
    with pytest.raises(SystemExit):
        compare.main(["x", "--out", "cmp.png"])
    assert "--out is a folder, as in every command" in capsys.readouterr().err


def test_a_run_with_one_point_per_curve_is_drawn_as_points():
    """A 1-epoch run logs one loss, one lr and one val point: markers, not invisible lines;
    a panel without any point says so."""
    one = [{"epoch": "1.0", "iteration": "2", "loss": "3.5", "lr": "0.01", "val_map": ""},
           {"epoch": "1.0", "iteration": "2", "loss": "", "lr": "", "val_map": "0.4"}]
    fig = run_comparison_figure({"one": one, "none": []})
    loss, lr, val = fig.axes
    for ax in (loss, lr, val):
        (line,) = ax.lines
        assert line.get_marker() == "o" and len(line.get_xdata()) == 1
    empty = run_comparison_figure({"none": []})
    assert all(t.get_text() == "no point logged" for ax in empty.axes for t in ax.texts)
    assert len([t for ax in empty.axes for t in ax.texts]) == 3
