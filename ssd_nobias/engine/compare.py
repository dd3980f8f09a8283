"""Runs side by side: one summary row per run directory, from its metrics.csv and config.yaml,
and their curves in one picture."""
from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

from ssd_nobias.config import load_config
from ssd_nobias.engine.metrics import read_metrics
from ssd_nobias.errors import DataError
from ssd_nobias.plots import plot_run_comparison


@dataclass(frozen=True)
class RunSummary:
    """What a run reached: epochs done of planned, best and last val metric, last loss, speed."""

    name: str
    path: str
    model: str
    norm: str
    lr: float
    epochs_done: float
    epochs_planned: int
    best_val: Optional[float]
    best_epoch: Optional[float]
    last_val: Optional[float]
    last_loss: Optional[float]
    images_per_s: Optional[float]  # median over the run's log rows


def run_rows(run_dir: str) -> List[Dict[str, str]]:
    """metrics.csv of a run directory; a folder without one is an error naming it."""
    if not os.path.isfile(os.path.join(run_dir, "metrics.csv")):
        raise DataError(f"{run_dir} has no metrics.csv: not a run directory (output_dir of a "
                        f"training)")
    return read_metrics(run_dir)


def summarize(run_dir: str, name: str) -> RunSummary:
    rows = run_rows(run_dir)
    cfg = load_config(os.path.join(run_dir, "config.yaml"))

    def column(key):
        return [(float(r["epoch"]), float(r[key])) for r in rows if r.get(key)]

    vals, losses, speeds = column("val_map"), column("loss"), column("images_per_s")
    best = max(vals, key=lambda ev: ev[1]) if vals else None
    return RunSummary(name, run_dir, cfg.model.name, cfg.model.norm, cfg.train.lr,
                      max((float(r["epoch"]) for r in rows), default=0.0), cfg.train.epochs,
                      best[1] if best else None, best[0] if best else None,
                      vals[-1][1] if vals else None, losses[-1][1] if losses else None,
                      statistics.median(s for _, s in speeds) if speeds else None)


def run_names(run_dirs: Sequence[str]) -> List[str]:
    """Each run's folder name, with its parent's where two share one."""
    names = [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    return [os.path.join(os.path.basename(os.path.dirname(os.path.normpath(d))), n)
            if names.count(n) > 1 else n for d, n in zip(run_dirs, names)]


def compare_runs(run_dirs: Sequence[str], picture: Optional[str] = None) -> List[RunSummary]:
    """The runs' summaries; with `picture`, their losses, lr and val metric in one PNG."""
    names = run_names(run_dirs)
    summaries = [summarize(d, n) for d, n in zip(run_dirs, names)]
    if picture:
        plot_run_comparison(picture, {n: run_rows(d) for d, n in zip(run_dirs, names)})
    return summaries


def format_comparison(summaries: Sequence[RunSummary]) -> str:
    def num(x, fmt):
        return "-" if x is None else format(x, fmt)

    width = max(len("run"), *(len(s.name) for s in summaries))
    rows = [f"{'run':{width}s}  {'model':28s} {'norm':9s} {'lr':>8s} {'epochs':>9s} "
            f"{'best val':>8s} {'at':>5s} {'last val':>8s} {'loss':>7s} {'img/s':>6s}"]
    for s in summaries:
        rows.append(f"{s.name:{width}s}  {s.model:28s} {s.norm:9s} {s.lr:8.4g} "
                    f"{s.epochs_done:4.0f}/{s.epochs_planned:<4d} {num(s.best_val, '8.4f')} "
                    f"{num(s.best_epoch, '5.0f')} {num(s.last_val, '8.4f')} "
                    f"{num(s.last_loss, '7.3f')} {num(s.images_per_s, '6.1f')}")
    return "\n".join(rows)


def comparison_json(summaries: Sequence[RunSummary]) -> dict:
    return {"runs": [asdict(s) for s in summaries]}
