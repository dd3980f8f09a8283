"""A run's metrics: metrics.csv (one row per log line and per validation), its curves.png,
and what studies and `compare` read back from them."""
from __future__ import annotations

import csv
import os
import statistics
from typing import Dict, List, Optional

import numpy as np

from ssd_nobias.atomic import replacing
from ssd_nobias.engine.tracking import TensorBoardSink
from ssd_nobias.plots import plot_training_curves

CSV_FIELDS = ("epoch", "iteration", "loss", "cls_loss", "box_loss", "lr", "images_per_s",
              "val_map")


def read_metrics(out_dir: str) -> List[Dict[str, str]]:
    """The rows of a run's metrics.csv (CSV_FIELDS, as strings; empty where not measured)."""
    with open(os.path.join(out_dir, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def run_curves(out: str) -> dict:
    """A run's val metric per validated epoch ([epoch, value]), its training losses averaged
    per epoch ([epoch, loss, class, box]) and its median images/s (the first row left out:
    it includes the warm-up), from metrics.csv."""
    rows = read_metrics(out)
    val = [(float(r["epoch"]), float(r["val_map"])) for r in rows if r["val_map"]]
    per_epoch: Dict[int, list] = {}
    for r in rows:
        if r["loss"]:
            per_epoch.setdefault(int(np.ceil(float(r["epoch"]) - 1e-9)), []).append(
                [float(r["loss"]), float(r["cls_loss"]), float(r["box_loss"])])
    losses = [[e] + np.round(np.mean(v, 0), 4).tolist() for e, v in sorted(per_epoch.items())]
    speeds = [float(r["images_per_s"]) for r in rows if r["images_per_s"]]
    return {"val_curve": val, "loss_curve": losses,
            "train_images_per_s": statistics.median(speeds[1:] or speeds)}


class MetricsLog:
    """metrics.csv of a run (appended, truncated past the resume point) and its curves.png;
    each row also goes to `sink` (TensorBoard) if given."""

    def __init__(self, out_dir: str, resume_iteration: int,
                 sink: Optional[TensorBoardSink] = None):
        self.path = os.path.join(out_dir, "metrics.csv")
        self.plot = os.path.join(out_dir, "curves.png")
        self.sink = sink
        rows = []
        if resume_iteration and os.path.exists(self.path):
            rows = [r for r in read_metrics(out_dir) if int(r["iteration"]) <= resume_iteration]
        self.rows: List[Dict[str, str]] = rows
        self._write_all()

    def add(self, **values) -> None:
        row = {k: _fmt(values.get(k)) for k in CSV_FIELDS}
        self.rows.append(row)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, CSV_FIELDS).writerow(row)
        if self.sink is not None:
            self.sink.add_row({k: values.get(k) for k in CSV_FIELDS})

    def draw(self) -> None:
        plot_training_curves(self.plot, self.rows)

    def _write_all(self) -> None:
        with replacing(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, CSV_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
