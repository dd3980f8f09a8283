"""Where the recipe loses to the best stock arm (issue 49's diagnosis), from a study's committed
per-image matches: COCO AP at each IoU threshold 0.50-0.95 for both arms and their difference
with a two-level interval per threshold (each arm's seeds resampled, then the test images,
paired). A gap that grows with the threshold is one of box fit (localization); a gap flat
across thresholds is one of finding the objects.

    python studies/scripts/diagnose.py studies/results/study_v4/shapes_36ep [--samples 2000]
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Dict, List, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssd_nobias.atomic import write_json
from ssd_nobias.evaluation.ap_stats import COCO_IOUS, ImageMatches, Pooled
from ssd_nobias_studies.report import Detections, arm_runs, settled
from ssd_nobias_studies.runner import ARMS, load_protocol, read_records


def ap_by_iou(pooled: Pooled, idx: np.ndarray) -> np.ndarray:
    """COCO AP (101-point, area all) at each of the ten IoU thresholds, over the images idx."""
    p = pooled.coco_precision(idx)
    out = np.empty(len(COCO_IOUS))
    for t in range(len(COCO_IOUS)):
        valid = p[t][p[t] > -1]
        out[t] = valid.mean() if valid.size else np.nan
    return out


def by_iou(arm: Sequence[Sequence[ImageMatches]], other: Sequence[Sequence[ImageMatches]],
           samples: int = 2000, seed: int = 0) -> Dict[str, List[float]]:
    """Each arm's mean AP per IoU threshold over its seeds, their difference and its 95 %
    two-level interval per threshold (one resample of seeds and images serves every
    threshold)."""
    arm, other = [Pooled(run) for run in arm], [Pooled(run) for run in other]
    n = arm[0].images
    everything = np.arange(n)
    means = [np.mean([ap_by_iou(run, everything) for run in runs], 0) for runs in (arm, other)]
    rng = np.random.default_rng(seed)
    draws = np.empty((samples, len(COCO_IOUS)))
    for k in range(samples):
        drawn = [rng.integers(0, len(runs), len(runs)) for runs in (arm, other)]
        idx = rng.integers(0, n, n)
        scored = [np.mean([ap_by_iou(runs[i], idx) for i in picks], 0)
                  for runs, picks in zip((arm, other), drawn)]
        draws[k] = scored[0] - scored[1]
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return {"iou": [round(float(t), 2) for t in COCO_IOUS], "ap_arm": means[0].tolist(),
            "ap_other": means[1].tolist(), "difference": (means[0] - means[1]).tolist(),
            "low": low.tolist(), "high": high.tolist(), "samples": samples, "images": n,
            "runs": [len(arm), len(other)]}


def diagnose(folder: str, samples: int) -> dict:
    """By-IoU figures of (a) against the best stock arm of the study committed in `folder`."""
    protocol = load_protocol(os.path.join(folder, "protocol.json"))
    with open(os.path.join(folder, "study.json")) as f:
        best = json.load(f)["comparisons"]["best_stock"]["ap"]
    runs = arm_runs(settled(read_records(folder), protocol))
    detections = Detections(folder)
    sides = [[detections(r["run"], name, "test")[1] for r in runs[name]]
             for name in ("nobias", best)]
    return dict(by_iou(*sides, samples=samples), arm="nobias", other=best, split="test")


def plot(path: str, result: dict, title: str) -> None:
    """AP against IoU threshold for both arms, and their difference with its interval."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    iou = result["iou"]
    for key, name in (("ap_arm", result["arm"]), ("ap_other", result["other"])):
        left.plot(iou, 100 * np.asarray(result[key]), marker="o", label=ARMS[name])
    left.set(xlabel="IoU threshold", ylabel="test AP (points)")
    left.legend(fontsize=7)
    diff = 100 * np.asarray(result["difference"])
    right.fill_between(iou, 100 * np.asarray(result["low"]), 100 * np.asarray(result["high"]),
                       alpha=0.3, label="95 % interval, seeds and images")
    right.plot(iou, diff, marker="o", label="(a) - best stock arm")
    right.axhline(0, color="k", lw=0.8)
    right.set(xlabel="IoU threshold", ylabel="difference (points)")
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="a committed study folder (study.json, runs/, matches/)")
    p.add_argument("--samples", type=int, default=2000)
    args = p.parse_args(argv)
    result = diagnose(args.folder, args.samples)
    write_json(os.path.join(args.folder, "by_iou.json"), result)
    plot(os.path.join(args.folder, "by_iou.png"), result,
         f"{os.path.relpath(args.folder)}: AP by IoU threshold, five seeds each")
    for t, a, o, d, lo, hi in zip(result["iou"], result["ap_arm"], result["ap_other"],
                                  result["difference"], result["low"], result["high"]):
        print(f"IoU {t:.2f}: (a) {100 * a:.2f} stock {100 * o:.2f} difference "
              f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]")
    return 0
