"""SSD anchors as GluonCV's SSDAnchorGenerator lays them out, and how well a set of anchor sizes
covers a dataset's boxes: the fraction of ground-truth boxes whose best anchor has IoU >= 0.5
(SSD's matching threshold; a box below it is matched to its best anchor alone), by box size.

The 300 models' first map has stride 16 (MobileNet's 19x19), and a 21 px anchor on a 16 px
grid overlaps a 21 px box by IoU >= 0.5 only when the box's centre is within a few pixels of a
cell centre; the sizes GluonCV ships for them come from its stride-8 VGG presets, and the
models here take SSD's scales instead (model/ssd.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

# Candidate anchor sizes (base 300): 7 values, map i uses sizes i and i+1 as GluonCV does.
ANCHOR_PRESETS = {
    "gluoncv": (21, 45, 99, 153, 207, 261, 315),  # ssd_300_mobilenet0.25 (from VGG's stride 8)
    "ssd": (30, 60, 111, 162, 213, 264, 315),  # SSD's scales 0.1, 0.2 .. 0.9: the 300 default
    "lite": (60, 105, 150, 195, 240, 285, 300),  # ssd_300_mobilenet1.0_lite
}
SIZE_EDGES = (0, 16, 32, 64, 128, math.inf)  # box size sqrt(w * h) in input pixels
MATCH_IOU = 0.5


def feature_sizes(base_size: int, steps: Sequence[float]) -> List[int]:
    """The side of each feature map: ceil(base / step) (19, 10, 5, 3, 2, 1 at 300)."""
    return [int(math.ceil(base_size / s - 1e-9)) for s in steps]


def ssd_anchors_np(sizes: Sequence[float], steps: Sequence[float],
                   ratios: Sequence[Sequence[float]], base_size: int) -> np.ndarray:
    """(N, 4) anchors (cx, cy, w, h) in input pixels, in GluonCV's order: per map, row, column,
    then sizes[i], sqrt(sizes[i] * sizes[i + 1]) and sizes[i] at each further ratio."""
    out = []
    for i, (step, side) in enumerate(zip(steps, feature_sizes(base_size, steps))):
        shapes = [(sizes[i], sizes[i]), (math.sqrt(sizes[i] * sizes[i + 1]),) * 2]
        shapes += [(sizes[i] * math.sqrt(r), sizes[i] / math.sqrt(r)) for r in ratios[i][1:]]
        centre = (np.arange(side) + 0.5) * step
        cy, cx = np.meshgrid(centre, centre, indexing="ij")
        cell = np.stack([cx.ravel(), cy.ravel()], 1)
        wh = np.asarray(shapes, np.float64)
        grid = np.concatenate([np.repeat(cell, len(wh), 0), np.tile(wh, (len(cell), 1))], 1)
        out.append(grid)
    return np.concatenate(out, 0)


def best_iou(boxes: np.ndarray, anchors: np.ndarray, chunk: int = 256) -> np.ndarray:
    """For each box (x0, y0, x1, y1), the highest IoU with any anchor (cx, cy, w, h)."""
    a0 = anchors[:, :2] - anchors[:, 2:] / 2
    a1 = anchors[:, :2] + anchors[:, 2:] / 2
    area_a = anchors[:, 2] * anchors[:, 3]
    best = np.zeros(len(boxes))
    for start in range(0, len(boxes), chunk):
        b = np.asarray(boxes[start:start + chunk], np.float64)
        lo = np.maximum(b[:, None, :2], a0[None])
        hi = np.minimum(b[:, None, 2:], a1[None])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        best[start:start + chunk] = (inter / (area_b[:, None] + area_a[None] - inter)).max(1)
    return best


@dataclass(frozen=True)
class Bucket:
    """Boxes of one size range and the fraction an anchor covers."""

    low: float
    high: float
    boxes: int
    covered: float  # fraction with best IoU >= MATCH_IOU (nan when no boxes)

    @property
    def label(self) -> str:
        return f"{self.low:g}+ px" if math.isinf(self.high) else f"{self.low:g}-{self.high:g} px"


def coverage(boxes: np.ndarray, anchors: np.ndarray,
             edges: Sequence[float] = SIZE_EDGES) -> Tuple[float, List[Bucket]]:
    """(covered fraction of all boxes, per size bucket) for boxes in input pixels."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    hit = best_iou(boxes, anchors) >= MATCH_IOU
    size = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    buckets = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (size >= low) & (size < high)
        n = int(inside.sum())
        buckets.append(Bucket(low, high, n, float(hit[inside].mean()) if n else float("nan")))
    return float(hit.mean()) if len(hit) else float("nan"), buckets


def coco_like_boxes(count: int, base_size: int = 300, seed: int = 0) -> np.ndarray:
    """`count` boxes in a base_size square with COCO's size mix: 41 / 34 / 24 % small / medium /
    large by COCO's area buckets (32 and 96 px sides) on 640x480 images resized to base_size
    (sides x base/554, the geometric mean of the two scale factors); sides log-uniform within a
    bucket (small from 4 px at 640), aspect ratio log-uniform in [1/3, 3], placed uniformly."""
    rng = np.random.RandomState(seed)
    scale = base_size / math.sqrt(640 * 480)
    ranges = [(4 * scale, 32 * scale), (32 * scale, 96 * scale), (96 * scale, 0.9 * base_size)]
    which = rng.choice(3, size=count, p=[0.41, 0.34, 0.25])
    lo = np.array([r[0] for r in ranges])[which]
    hi = np.array([r[1] for r in ranges])[which]
    side = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3), count))
    w = np.minimum(side * np.sqrt(aspect), base_size)
    h = np.minimum(side / np.sqrt(aspect), base_size)
    x0 = rng.uniform(0, base_size - w)
    y0 = rng.uniform(0, base_size - h)
    return np.stack([x0, y0, x0 + w, y0 + h], 1)


def dataset_boxes(dataset, base_size: int, limit: int = 0) -> np.ndarray:
    """Every ground-truth box of a GluonCV detection dataset, in the base_size x base_size input
    the model sees (each image resized as ValTransform does), at most `limit` images (0: all)."""
    boxes = []
    count = len(dataset) if limit <= 0 else min(limit, len(dataset))
    for i in range(count):
        image, label = dataset[i]
        h, w = image.shape[:2]
        scale = np.array([base_size / w, base_size / h] * 2)  # x0 y0 x1 y1
        b = np.asarray(label, np.float64)[:, :4] * scale
        boxes.append(b)
    return np.concatenate(boxes, 0) if boxes else np.zeros((0, 4))


def format_coverage(results: Dict[str, Tuple[float, List[Bucket]]], title: str) -> str:
    """A table: one row per preset, the covered fraction per size bucket and overall."""
    first = next(iter(results.values()))[1]
    head = f"{'anchor sizes':<10s}" + "".join(f"{b.label:>14s}" for b in first) + f"{'all':>9s}"
    counts = f"{'boxes':<10s}" + "".join(f"{b.boxes:>14d}" for b in first) + \
        f"{sum(b.boxes for b in first):>9d}"
    rows = [title, head, counts]
    for name, (total, buckets) in results.items():
        rows.append(f"{name:<10s}" + "".join(
            f"{b.covered:>14.1%}" if b.boxes else f"{'-':>14s}" for b in buckets) +
            f"{total:>9.1%}")
    return "\n".join(rows)
