"""The pictures a run leaves behind: detections on val images, PR curves, training curves.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot state, no windows)
and every PNG is written under a temporary name, then renamed.
"""
from __future__ import annotations

import colorsys
import math
from typing import Mapping, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssd_nobias.atomic import replacing

GT_COLOR = (255, 255, 255)


def palette(n: int) -> list:
    """n distinct RGB colours, the same for the same n."""
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1, 0.85, 0.95))
            for i in range(n)]


def _atomic_png(path: str, write) -> None:
    with replacing(path, ".png") as tmp:  # matplotlib picks the format by extension
        write(tmp)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
               class_names: Sequence[str], scores: Optional[np.ndarray] = None,
               color: Optional[Tuple[int, int, int]] = None, thickness: int = 2) -> np.ndarray:
    """A copy of an RGB image with boxes (x0 y0 x1 y1 pixels) and 'class [score]' tags drawn.

    Rows with a negative label (GluonCV's padding) are skipped.
    """
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    colors = palette(len(class_names))
    for k, (box, label) in enumerate(zip(np.asarray(boxes), np.asarray(labels))):
        if label < 0:
            continue
        c = color or colors[int(label) % len(colors)]
        x0, y0, x1, y1 = (int(round(v)) for v in box[:4])
        cv2.rectangle(out, (x0, y0), (x1, y1), c, thickness)
        tag = class_names[int(label)] if int(label) < len(class_names) else str(int(label))
        if scores is not None:
            tag += f" {float(scores[k]):.2f}"
        (tw, th), _ = cv2.getTextSize(tag, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        ty = max(y0, th + 2)
        cv2.rectangle(out, (x0, ty - th - 3), (x0 + tw + 2, ty), c, -1)
        cv2.putText(out, tag, (x0 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def _fit(image: np.ndarray, tile: int) -> Tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    scale = tile / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def plot_detections(path: str, images: Sequence[np.ndarray],
                    ground_truth: Sequence[Tuple[np.ndarray, np.ndarray]],
                    predictions: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]],
                    class_names: Sequence[str], score_thresh: float = 0.5, ncols: int = 4,
                    tile: int = 320) -> None:
    """detections_grid written as a PNG."""
    save_image(path, detections_grid(images, ground_truth, predictions, class_names,
                                     score_thresh, ncols, tile))


def save_image(path: str, image: np.ndarray) -> None:
    """An RGB uint8 image as a PNG or, for a .jpg path, a JPEG (photographs: a tenth of the
    size), written under a temporary name and renamed."""
    suffix = ".jpg" if path.lower().endswith((".jpg", ".jpeg")) else ".png"
    with replacing(path, suffix) as tmp:  # OpenCV picks the format by extension
        cv2.imwrite(tmp, image[:, :, ::-1])


def detections_grid(images: Sequence[np.ndarray],
                    ground_truth: Sequence[Tuple[np.ndarray, np.ndarray]],
                    predictions: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]],
                    class_names: Sequence[str], score_thresh: float = 0.5, ncols: int = 4,
                    tile: int = 320) -> np.ndarray:
    """A grid of images (RGB): ground truth in thin white, predictions >= score_thresh in
    colour."""
    ncols = max(1, min(ncols, len(images)))
    nrows = max(1, math.ceil(len(images) / ncols))
    legend, gap = 24, 6
    step = tile + gap
    grid = np.full((nrows * step + legend, ncols * step - gap, 3), 40, np.uint8)
    for i, image in enumerate(images):
        small, scale = _fit(image, tile)
        gt_boxes, gt_labels = ground_truth[i]
        small = draw_boxes(small, np.asarray(gt_boxes) * scale, gt_labels, class_names,
                           color=GT_COLOR, thickness=1)
        boxes, labels, scores = (np.asarray(a) for a in predictions[i])
        keep = scores >= score_thresh
        small = draw_boxes(small, boxes[keep] * scale, labels[keep], class_names, scores[keep])
        r, c = divmod(i, ncols)
        grid[r * step:r * step + small.shape[0], c * step:c * step + small.shape[1]] = small
    cv2.putText(grid, f"white: ground truth   colour: prediction (score >= {score_thresh:g})",
                (6, nrows * step + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1,
                cv2.LINE_AA)
    return grid


def labelled_grid(samples: Sequence[Tuple[np.ndarray, np.ndarray]],
                  class_names: Sequence[str], ncols: int = 4, title: str = "") -> np.ndarray:
    """RGB images at their own size (a training batch: all the input side) with their boxes
    (N, 5+: corners, class) drawn in their class's colour, in one grid with a title line."""
    ncols = max(1, min(ncols, len(samples)))
    nrows = max(1, math.ceil(len(samples) / ncols))
    h = max(image.shape[0] for image, _ in samples)
    w = max(image.shape[1] for image, _ in samples)
    legend, gap = 24, 6
    grid = np.full((nrows * (h + gap) + legend, ncols * (w + gap) - gap, 3), 40, np.uint8)
    for i, (image, boxes) in enumerate(samples):
        boxes = np.asarray(boxes).reshape(-1, max(5, np.asarray(boxes).shape[-1]))
        drawn = draw_boxes(image, boxes[:, :4], boxes[:, 4], class_names)
        r, c = divmod(i, ncols)
        grid[r * (h + gap):r * (h + gap) + drawn.shape[0],
             c * (w + gap):c * (w + gap) + drawn.shape[1]] = drawn
    cv2.putText(grid, title, (6, nrows * (h + gap) + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (230, 230, 230), 1, cv2.LINE_AA)
    return grid


def _save(fig: Figure, path: str) -> None:
    FigureCanvasAgg(fig)
    _atomic_png(path, lambda tmp: fig.savefig(tmp, dpi=100))


class PRCurve(NamedTuple):
    """One class's precision against recall, its AP and how many objects it has."""

    recall: np.ndarray
    precision: np.ndarray
    ap: float
    objects: int


def plot_pr_curves(path: str, curves: Mapping[str, PRCurve], title: str = "") -> None:
    """Precision against recall, one small panel per class, AP in each title; a class with
    objects and no detection is drawn at AP 0, not as a class without ground truth."""
    names = list(curves)
    ncols = min(5, max(1, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig = Figure(figsize=(2.6 * ncols, 2.4 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names):
        recall, precision, ap, objects = curves[name]
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if not objects:
            ax.set_title(name, fontsize=9)
            ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", fontsize=8)
            continue
        if len(recall) == 0:
            ax.set_title(f"{name} AP=0.000", fontsize=9)
            ax.text(0.5, 0.5, f"no detection of its {objects} objects", ha="center",
                    va="center", fontsize=8)
            continue
        ax.plot(recall, precision, lw=1.5)
        ax.set_title(f"{name} AP={ap:.3f}", fontsize=9)
    fig.supxlabel("recall", fontsize=9)
    fig.supylabel("precision", fontsize=9)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_confusion_matrix(path: str, counts: np.ndarray, class_names: Sequence[str],
                          score_thresh: float) -> None:
    """confusion.ConfusionMatrix's counts as a heat map: each true class's row as shares of
    its boxes (colour) with the counts written in; background last."""
    _save(confusion_figure(counts, class_names, score_thresh), path)


def confusion_figure(counts: np.ndarray, class_names: Sequence[str],
                     score_thresh: float) -> Figure:
    names = [*class_names, "background"]
    n = len(names)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    side = 1.6 + 0.55 * n
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"score >= {score_thresh:g}, IoU >= 0.5; rows: share of the true class",
                 fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def _column(rows, key: str):
    xs, ys = [], []
    for row in rows:
        x, y = row.get("epoch", ""), row.get(key, "")
        if x not in ("", None) and y not in ("", None):
            xs.append(float(x))
            ys.append(float(y))
    return xs, ys


def plot_training_curves(path: str, rows: Sequence[Mapping[str, object]]) -> None:
    """curves.png: losses, learning rate and val mAP against epochs, from metrics.csv rows."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    losses = [k for k in keys if k == "loss" or k.endswith("_loss")]
    fig = Figure(figsize=(7, 8), layout="constrained")
    ax_loss, ax_lr, ax_map = fig.subplots(3, 1, sharex=True)
    positive = True
    for key in losses:
        xs, ys = _column(rows, key)
        if xs:
            ax_loss.plot(xs, ys, label=key, lw=1.2, marker="." if len(xs) < 3 else None)
            positive = positive and min(ys) > 0
    if any(ax_loss.lines):
        ax_loss.legend(fontsize=8)
        if positive:
            ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    xs, ys = _column(rows, "lr")
    ax_lr.plot(xs, ys, color="tab:green", marker="." if len(xs) < 3 else None)
    ax_lr.set_ylabel("learning rate")
    xs, ys = _column(rows, "val_map")
    if xs:
        ax_map.plot(xs, ys, color="tab:red", marker="o")
        ax_map.set_ylim(0, max(1e-3, max(ys)) * 1.1)
    else:
        ax_map.text(0.5, 0.5, "no validation yet", ha="center", va="center",
                    transform=ax_map.transAxes)
    ax_map.set_ylabel("val mAP")
    ax_map.set_xlabel("epoch")
    for ax in (ax_loss, ax_lr, ax_map):
        ax.grid(alpha=0.3)
    _save(fig, path)


def plot_run_comparison(path: str, runs: Mapping[str, Sequence[Mapping[str, object]]]) -> None:
    """Several runs' total loss, learning rate and val metric against epochs, one colour per
    run, from their metrics.csv rows."""
    _save(run_comparison_figure(runs), path)


def run_comparison_figure(runs: Mapping[str, Sequence[Mapping[str, object]]]) -> Figure:
    """plot_run_comparison's picture. A series of one or two points is drawn as markers (a
    line of one point is invisible); a panel no run has a point for says so."""
    fig = Figure(figsize=(13, 4), layout="constrained")
    ax_loss, ax_lr, ax_map = fig.subplots(1, 3)
    colors = palette(len(runs))
    positive = True
    for (name, rows), color in zip(runs.items(), colors):
        color = tuple(c / 255 for c in color)
        for ax, key in ((ax_loss, "loss"), (ax_lr, "lr"), (ax_map, "val_map")):
            xs, ys = _column(rows, key)
            if not xs:
                continue
            marked = key == "val_map" or len(xs) < 3
            ax.plot(xs, ys, color=color, lw=1.2, label=name, marker="o" if marked else None,
                    ms=3 if key == "val_map" else 5)
            if key == "loss":
                positive = positive and min(ys) > 0
    if positive and ax_loss.lines:
        ax_loss.set_yscale("log")
    for ax, title in ((ax_loss, "training loss"), (ax_lr, "learning rate"),
                      (ax_map, "val metric")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "no point logged", ha="center", va="center",
                    transform=ax.transAxes, color="0.5")
    ax_map.set_ylim(bottom=0)
    if ax_map.lines:
        ax_map.legend(fontsize=8)
    return fig
