"""A detector's confusion matrix: which class each ground-truth box was taken for.

Detections scoring at least the threshold are matched to ground-truth boxes by IoU whatever
their classes, highest score first, each box once; a matched pair counts at (true class,
predicted class), an unmatched box at (its class, background: missed) and an unmatched
detection at (background, its class: a false alarm). Difficult boxes are neither counted nor
counted against (a detection on one is dropped), as VOC's AP does.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4), corners in pixels."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:4] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:4] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class ConfusionMatrix:
    """Counts over images: rows the true class, columns the predicted one; the last row and
    column are background."""

    def __init__(self, num_classes: int, score_thresh: float = 0.5, iou_thresh: float = 0.5):
        self.counts = np.zeros((num_classes + 1, num_classes + 1), np.int64)
        self.score_thresh, self.iou_thresh = score_thresh, iou_thresh

    def update(self, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray,
               gt: np.ndarray) -> None:
        """One image: detections (boxes, labels, scores) and its label rows (x0 y0 x1 y1 class
        [difficult])."""
        background = len(self.counts) - 1
        keep = scores >= self.score_thresh
        order = np.argsort(-scores[keep], kind="stable")
        boxes, labels = boxes[keep][order], labels[keep][order].astype(int)
        difficult = gt[:, 5] > 0 if gt.shape[1] > 5 else np.zeros(len(gt), bool)
        iou = box_iou(boxes, gt[:, :4]) if len(boxes) and len(gt) else \
            np.zeros((len(boxes), len(gt)))
        taken = np.zeros(len(gt), bool)
        for k in range(len(boxes)):
            free = np.where(taken, -1.0, iou[k])
            best = int(np.argmax(free)) if len(gt) else -1
            if best < 0 or free[best] < self.iou_thresh:
                self.counts[background, labels[k]] += 1
                continue
            taken[best] = True
            if not difficult[best]:
                self.counts[int(gt[best, 4]), labels[k]] += 1
        for row in gt[~taken & ~difficult]:
            self.counts[int(row[4]), background] += 1

    def to_json(self, class_names: Sequence[str]) -> Dict:
        return {"classes": [*class_names, "background"], "rows": "true class",
                "columns": "predicted class", "score_thresh": self.score_thresh,
                "iou_thresh": self.iou_thresh, "counts": self.counts.tolist()}
