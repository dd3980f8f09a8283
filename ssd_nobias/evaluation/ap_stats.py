"""VOC07 AP50 and COCO AP[.5:.95] from per-image matches, affordable on any resample of images.

Both metrics match detections to ground truth image by image, so an image's matches can be
computed once and any resample of images scored from them (`Pooled`): that is what makes a
bootstrap over images affordable. The numbers equal GluonCV's VOC07MApMetric and pycocotools'
COCOeval (bbox, area 'all', 100 detections per image) exactly (tests/evaluation/test_ap_stats.py).
Difficult ground truth is ignored by VOC07 and is a crowd region (iscrowd) for COCO.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

COCO_IOUS = np.linspace(0.5, 0.95, 10)
COCO_RECALLS = np.linspace(0.0, 1.0, 101)
COCO_MAX_DETS = 100


@dataclass(frozen=True)
class ImageMatches:
    """One image's detections scored against its ground truth, per class id.

    voc: {class: (scores, codes)} codes 1 true positive, 0 false positive, -1 on a difficult
    object (ignored); voc_pos: {class: non-difficult objects}. coco: {class: (scores,
    matched[iou, det], ignored[iou, det])} in COCOeval's order, at most 100 per class;
    coco_pos: {class: non-crowd objects}."""

    voc: Dict[int, Tuple[np.ndarray, np.ndarray]]
    voc_pos: Dict[int, int]
    coco: Dict[int, Tuple[np.ndarray, np.ndarray, np.ndarray]]
    coco_pos: Dict[int, int]


def iou_matrix(a: np.ndarray, b: np.ndarray, crowd: np.ndarray = None) -> np.ndarray:
    """IoU of boxes a (N, 4) with b (M, 4), corners; where crowd[j], intersection over a's area
    (COCO's rule for crowd regions)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)[:, None]
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)[None, :]
    union = area_a + area_b - inter
    if crowd is not None:
        union = np.where(crowd[None, :], area_a, union)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_image(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                gt: np.ndarray) -> ImageMatches:
    """Match one image's detections (corners in pixels, class ids, scores) with its label rows
    (xmin, ymin, xmax, ymax, class[, difficult])."""
    difficult = gt[:, 5] > 0 if gt.shape[1] > 5 else np.zeros(len(gt), bool)
    voc, voc_pos, coco, coco_pos = {}, {}, {}, {}
    for c in np.unique(np.concatenate([labels, gt[:, 4]]).astype(int)):
        d = labels == c
        g = gt[:, 4] == c
        voc[c], voc_pos[c] = _voc(boxes[d], scores[d], gt[g, :4], difficult[g])
        coco[c], coco_pos[c] = _coco(boxes[d], scores[d], gt[g, :4], difficult[g])
    return ImageMatches(voc, voc_pos, coco, coco_pos)


def _voc(boxes, scores, gt, difficult):
    """GluonCV's VOC07 rule: each detection, best-scored first, takes the object it overlaps
    most (IoU >= 0.5, on boxes widened by a pixel as VOC's integer boxes are)."""
    order = scores.argsort()[::-1]
    boxes, scores = boxes[order], scores[order]
    pos = int((~difficult).sum())
    if len(boxes) == 0 or len(gt) == 0:
        return (scores, np.zeros(len(scores), np.int8)), pos
    wide = lambda b: np.concatenate([b[:, :2], b[:, 2:] + 1], 1)  # noqa: E731
    iou = iou_matrix(wide(boxes), wide(gt))
    best = iou.argmax(1)
    best[iou.max(1) < 0.5] = -1
    taken = np.zeros(len(gt), bool)
    codes = np.zeros(len(boxes), np.int8)
    for k, j in enumerate(best):
        if j < 0:
            continue
        codes[k] = -1 if difficult[j] else (0 if taken[j] else 1)
        taken[j] = True
    return (scores, codes), pos


def _coco(boxes, scores, gt, crowd):
    """COCOeval.evaluateImg for one class, area 'all': greedy matching at each IoU threshold,
    non-crowd objects first; a detection matched to a crowd region is ignored."""
    order = np.argsort(-scores, kind="mergesort")[:COCO_MAX_DETS]
    boxes, scores = boxes[order], scores[order]
    gorder = np.argsort(crowd, kind="mergesort")
    gt, crowd = gt[gorder], crowd[gorder]
    matched = np.zeros((len(COCO_IOUS), len(boxes)), bool)
    ignored = np.zeros((len(COCO_IOUS), len(boxes)), bool)
    if len(boxes) and len(gt):
        ious = iou_matrix(boxes, gt, crowd)
        for t, thresh in enumerate(COCO_IOUS):
            taken = np.zeros(len(gt), bool)
            for d in range(len(boxes)):
                best, m = min(thresh, 1 - 1e-10), -1
                for g in range(len(gt)):
                    if taken[g] and not crowd[g]:
                        continue
                    if m > -1 and not crowd[m] and crowd[g]:
                        break
                    if ious[d, g] < best:
                        continue
                    best, m = ious[d, g], g
                if m == -1:
                    continue
                ignored[t, d] = crowd[m]
                matched[t, d] = True
                taken[m] = True
    return (scores, matched, ignored), int((~crowd).sum())


class Pooled:
    """One run's per-image matches pooled per class, so that any resample of its images (indices,
    repeats allowed) is scored by gathering: the arrays, in the order, that concatenating the
    resampled images' matches gives, without a Python loop over images. The bootstrap scores
    every run thousands of times; this is what keeps that to minutes.

    Precision and recall are evaluated where true positives land only: a false positive or an
    ignored detection never raises precision and leaves recall as it is, so every maximum and
    every precision-at-recall that VOC07 and COCOeval take over all positions is taken at one
    of those: the figures are the full curves' (tests/evaluation/test_ap_stats.py holds them to GluonCV's
    and pycocotools' on resampled images)."""

    def __init__(self, images: Sequence[ImageMatches]):
        self.images = len(images)
        self.voc = {c: _pool([m.voc.get(c) for m in images], [m.voc_pos.get(c, 0) for m in images])
                    for c in sorted({c for m in images for c in m.voc_pos})}
        self.coco = {}
        for c in sorted({c for m in images for c in m.coco_pos}):
            held = [m.coco.get(c) for m in images]
            flags = [None if h is None else (h[0], h[1] & ~h[2], ~h[1] & ~h[2]) for h in held]
            self.coco[c] = _pool(flags, [m.coco_pos.get(c, 0) for m in images])

    def _all(self, idx):
        return np.arange(self.images) if idx is None else np.asarray(idx)

    def voc07_ap50(self, idx: Optional[np.ndarray] = None) -> float:
        """VOC07 11-point mAP at IoU 0.5 over the images idx (all by default; mean over classes
        with objects)."""
        aps = self.voc07_class_ap50(idx)
        return float(np.mean(list(aps.values()))) if aps else float("nan")

    def voc07_class_ap50(self, idx: Optional[np.ndarray] = None) -> Dict[int, float]:
        """{class id: VOC07 11-point AP at IoU 0.5} over the images idx, for the classes with
        objects there: what voc07_ap50 averages, and where a run that lags finds its cause."""
        idx, aps = self._all(idx), {}
        for c, pool in self.voc.items():
            pos = int(pool.pos[idx].sum())
            if pos == 0:
                continue
            scores, codes = pool.arrays
            at = pool.gather(idx)
            codes = codes[at][scores[at].argsort()[::-1]]
            hit = np.flatnonzero(codes == 1)
            tp = np.arange(1, len(hit) + 1)
            prec = tp / (tp + np.cumsum(codes == 0, dtype=np.int32)[hit])
            rec = tp / pos
            aps[c] = sum(prec[rec >= t].max() if (rec >= t).any() else 0.0
                         for t in np.arange(0.0, 1.1, 0.1)) / 11.0
        return aps

    def coco_precision(self, idx: Optional[np.ndarray] = None) -> np.ndarray:
        """COCOeval's precision[iou, recall, class] (area all, 100 dets) over the images idx;
        -1 where a class has no object among them."""
        idx = self._all(idx)
        out = -np.ones((len(COCO_IOUS), len(COCO_RECALLS), len(self.coco)))
        for k, pool in enumerate(self.coco.values()):
            pos = int(pool.pos[idx].sum())
            if pos == 0:
                continue
            scores, hits, misses = pool.arrays  # misses: unmatched and not ignored
            at = pool.gather(idx)
            at = at[np.argsort(-scores[at], kind="mergesort")]
            hits, fps = hits[:, at], np.cumsum(misses[:, at], 1, dtype=np.int32)
            for t in range(len(COCO_IOUS)):
                hit = np.flatnonzero(hits[t])
                if not len(hit):
                    out[t, :, k] = 0.0
                    continue
                tps = np.arange(1, len(hit) + 1, dtype=float)
                rc = tps / pos
                pr = tps / (fps[t, hit] + tps + np.spacing(1))
                pr = np.maximum.accumulate(pr[::-1])[::-1]
                i = np.searchsorted(rc, COCO_RECALLS, side="left")
                out[t, :, k] = np.where(i < len(hit), pr[np.minimum(i, len(hit) - 1)], 0.0)
        return out

    def coco_ap(self, idx: Optional[np.ndarray] = None) -> Dict[str, float]:
        """COCO AP[.5:.95], AP50 and AP75 (101-point, area all, 100 detections per image)."""
        p = self.coco_precision(idx)

        def mean(x):
            x = x[x > -1]
            return float(x.mean()) if x.size else float("nan")
        return {"AP": mean(p), "AP50": mean(p[0]), "AP75": mean(p[5])}


@dataclass(frozen=True)
class _ClassPool:
    """One class's per-image arrays end to end (arrays[k][..., start[i]:start[i] + count[i]] is
    image i's), and its objects per image."""

    arrays: Tuple[np.ndarray, ...]
    start: np.ndarray
    count: np.ndarray
    pos: np.ndarray

    def gather(self, idx: np.ndarray) -> np.ndarray:
        """Positions of the images idx's entries, image after image, as concatenation orders
        them."""
        count = self.count[idx]
        shift = self.start[idx] - (np.cumsum(count) - count)
        return np.repeat(shift, count) + np.arange(count.sum())


def _pool(held: Sequence[tuple], pos: Sequence[int]) -> _ClassPool:
    """A _ClassPool of per-image tuples of arrays (None where an image has none of the class),
    concatenated along their last axis."""
    present = [h for h in held if h is not None]
    count = np.array([0 if h is None else h[0].shape[-1] for h in held], np.int64)
    arrays = tuple(np.concatenate([h[k] for h in present], -1) for k in range(len(present[0])))
    return _ClassPool(arrays, np.cumsum(count) - count, count, np.asarray(pos, np.int64))


def voc07_ap50(images: Sequence[ImageMatches]) -> float:
    """VOC07 11-point mAP at IoU 0.5 over these images (mean over classes with objects)."""
    return Pooled(images).voc07_ap50()


def coco_precision(images: Sequence[ImageMatches]) -> np.ndarray:
    """COCOeval's precision[iou, recall, class] (area all, 100 dets); -1 where a class has no
    object."""
    return Pooled(images).coco_precision()


def coco_ap(images: Sequence[ImageMatches]) -> Dict[str, float]:
    """COCO AP[.5:.95], AP50 and AP75 (101-point, area all, 100 detections per image)."""
    return Pooled(images).coco_ap()


def matches_of(records: List[dict]) -> List[ImageMatches]:
    """ImageMatches of per-image records {"boxes", "labels", "scores", "gt"} (lists)."""
    out = []
    for r in records:
        boxes = np.asarray(r["boxes"], float).reshape(-1, 4)
        gt = np.asarray(r["gt"], float).reshape(-1, 6)
        out.append(match_image(boxes, np.asarray(r["labels"], int), np.asarray(r["scores"], float),
                               gt))
    return out


def matches_to_json(m: ImageMatches) -> dict:
    """One image's matches in a fifth of its detections' size (no boxes): per class the scores
    in matching order, VOC codes and COCO bits (bit t: matched or ignored at COCO_IOUS[t]).
    Scores are written as float32's shortest decimal, so they read back to the bit."""
    def short(scores):
        return [float(str(np.float32(s))) for s in scores]

    def bits(flags):
        return (flags.astype(np.int64) << np.arange(len(COCO_IOUS))[:, None]).sum(0).tolist()

    return {str(c): {"voc": [short(m.voc[c][0]), m.voc[c][1].tolist(), m.voc_pos[c]],
                     "coco": [short(m.coco[c][0]), bits(m.coco[c][1]), bits(m.coco[c][2]),
                              m.coco_pos[c]]}
            for c in m.voc}


def matches_from_json(held: dict) -> ImageMatches:
    """The ImageMatches that matches_to_json wrote."""
    def scores(values):
        return np.asarray(values, np.float32).astype(float)

    def flags(values):
        return (np.asarray(values, np.int64)[None, :] >> np.arange(len(COCO_IOUS))[:, None]) & 1 \
            == 1

    voc, voc_pos, coco, coco_pos = {}, {}, {}, {}
    for c, h in held.items():
        c = int(c)
        voc[c], voc_pos[c] = (scores(h["voc"][0]), np.asarray(h["voc"][1], np.int8)), h["voc"][2]
        coco[c] = (scores(h["coco"][0]), flags(h["coco"][1]), flags(h["coco"][2]))
        coco_pos[c] = h["coco"][3]
    return ImageMatches(voc, voc_pos, coco, coco_pos)
