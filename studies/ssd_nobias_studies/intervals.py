"""Intervals for the difference between two arms' mean AP over seeds, and the verdicts read
from them.

Two bootstraps of the same difference: `paired_bootstrap` resamples the test images only, so
its interval holds each arm's trained models fixed (how far the figure moves with other test
images); `two_level_bootstrap` first resamples each arm's seeds, then the images, so its
interval also counts how far it moves with other training runs. Verdicts use the two-level one
(docs of issue 49: an arm whose lead is one failed seed of the other is not ahead).
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np

from ssd_nobias.evaluation.ap_stats import ImageMatches, Pooled

METRICS: Dict[str, Callable[[Pooled, np.ndarray], float]] = {
    "ap50": Pooled.voc07_ap50, "ap": lambda pooled, idx: pooled.coco_ap(idx)["AP"]}
LEVELS = {"images": "test images resampled, each arm's runs fixed",
          "seeds, images": "each arm's seeds resampled, then test images, paired across arms"}


def _pooled(arm: Sequence[Sequence[ImageMatches]], other: Sequence[Sequence[ImageMatches]]):
    n = len(arm[0])
    if any(len(run) != n for run in list(arm) + list(other)):
        raise ValueError("every run must be scored on the same test images")
    return n, [Pooled(run) for run in arm], [Pooled(run) for run in other]


def _interval(draws: np.ndarray, difference: float, samples: int, n: int, runs, levels: str
              ) -> Dict[str, object]:
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"difference": difference, "low": float(low), "high": float(high),
            "samples": samples, "images": n, "runs": runs, "levels": levels}


def paired_bootstrap(arm: Sequence[Sequence[ImageMatches]],
                     other: Sequence[Sequence[ImageMatches]], metric: str,
                     samples: int = 2000, seed: int = 0) -> Dict[str, object]:
    """mean-over-seeds(arm) - mean-over-seeds(other) of `metric` (a METRICS key) on the test
    images, and its 95 % percentile interval from resampling images with replacement, the same
    images for both arms and every seed (the runs are paired by image).

    Args:
        arm, other: per seed, the ImageMatches of the same test images in the same order.
        metric: "ap50" (VOC07) or "ap" (COCO AP[.5:.95]).
    Returns:
        {"difference", "low", "high", "samples", "images", "runs": [len(arm), len(other)],
        "levels": "images"}.
    """
    score = METRICS[metric]
    n, arm, other = _pooled(arm, other)

    def diff(idx) -> float:
        return float(np.mean([score(run, idx) for run in arm]) -
                     np.mean([score(run, idx) for run in other]))

    rng = np.random.default_rng(seed)
    draws = np.array([diff(rng.integers(0, n, n)) for _ in range(samples)])
    return _interval(draws, diff(np.arange(n)), samples, n, [len(arm), len(other)], "images")


def two_level_bootstrap(arm: Sequence[Sequence[ImageMatches]],
                        other: Sequence[Sequence[ImageMatches]], metric: str,
                        samples: int = 2000, seed: int = 0,
                        same_runs: bool = False) -> Dict[str, object]:
    """The same difference as paired_bootstrap, its 95 % interval from a two-level resample:
    each arm's seeds drawn with replacement, then the test images with replacement, the same
    images for every drawn run of both arms. With one run per arm it is paired_bootstrap's
    interval in law.

    Args:
        same_runs: the two arms are two variants of the same trained runs, in the same order
            (a model's INT8 and float32 pairs): one draw of seeds serves both. Otherwise each
            arm's seeds are drawn apart (seed s of one arm has nothing in common with seed s
            of the other).
    Returns:
        paired_bootstrap's keys, "levels": "seeds, images".
    """
    score = METRICS[metric]
    n, arm, other = _pooled(arm, other)
    if same_runs and len(arm) != len(other):
        raise ValueError("same_runs needs as many runs in both arms")

    def mean(runs, drawn, idx) -> float:
        ids, counts = np.unique(drawn, return_counts=True)  # each distinct run scored once
        return float(sum(c * score(runs[i], idx) for i, c in zip(ids, counts)) / len(drawn))

    rng = np.random.default_rng(seed)
    draws = np.empty(samples)
    for k in range(samples):
        seeds_arm = rng.integers(0, len(arm), len(arm))
        seeds_other = seeds_arm if same_runs else rng.integers(0, len(other), len(other))
        idx = rng.integers(0, n, n)
        draws[k] = mean(arm, seeds_arm, idx) - mean(other, seeds_other, idx)
    everything = np.arange(n)
    difference = mean(arm, np.arange(len(arm)), everything) - mean(
        other, np.arange(len(other)), everything)
    return _interval(draws, difference, samples, n, [len(arm), len(other)], "seeds, images")


def verdict(low: float, high: float, margin: float) -> str:
    """What a difference's 95 % interval says against a non-inferiority margin."""
    if low > 0:
        return "superior"
    if low > -margin:
        return "non-inferior"
    if high < -margin:
        return "inferior"
    return "undecided"


def direction(low: float, high: float) -> str:
    """"ahead" for an interval wholly above 0, "behind" for one wholly below, else "either":
    the plain reading beside the verdict (an interval in [-margin, 0) is non-inferior and
    behind)."""
    if low > 0:
        return "ahead"
    if high < 0:
        return "behind"
    return "either"
