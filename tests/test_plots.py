"""The pictures: boxes land on the right pixels, low scores are left out, files are whole PNGs."""
import os

import cv2
import numpy as np

from ssd_nobias.plots import (GT_COLOR, PRCurve, draw_boxes, palette, plot_detections, plot_pr_curves,
                              plot_training_curves)

NAMES = ("circle", "square")


def read_rgb(path):
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    return image[:, :, ::-1]


def test_palette_is_distinct_and_stable():
    colors = palette(20)
    assert len(set(colors)) == 20 and palette(20) == colors


def test_draw_boxes_puts_edges_on_the_box_and_skips_padding():
    image = np.zeros((100, 120, 3), np.uint8)
    out = draw_boxes(image, np.array([[30, 40, 90, 80], [5, 5, 10, 10]]), np.array([1, -1]),
                     NAMES, thickness=1)
    color = palette(len(NAMES))[1]
    assert tuple(out[80, 60]) == color and tuple(out[60, 90]) == color  # bottom and right edges
    assert not out[60, 60].any()  # inside the box untouched
    assert not out[7, 7].any()  # label -1 is padding
    assert not image.any()  # the input is not drawn on


def test_detection_grid(tmp_path):
    images = [np.zeros((150, 300, 3), np.uint8), np.zeros((300, 150, 3), np.uint8),
              np.zeros((60, 60, 3), np.uint8)]
    gt = [(np.array([[0, 100, 299, 149]]), np.array([0]))] + [(np.zeros((0, 4)), [])] * 2
    predictions = [(np.array([[10, 10, 50, 50], [60, 10, 100, 50]]), np.array([0, 1]),
                    np.array([0.9, 0.3]))] + [(np.zeros((0, 4)), [], [])] * 2
    path = tmp_path / "detections.png"
    plot_detections(str(path), images, gt, predictions, NAMES, score_thresh=0.5, ncols=2,
                    tile=200)
    grid = read_rgb(path)
    assert grid.shape[:2] == (2 * 206 + 24, 2 * 206 - 6)
    assert tuple(grid[99, 100]) == GT_COLOR  # gt bottom edge, scaled by 200/300
    assert tuple(grid[33, 20]) == palette(2)[0]  # kept prediction's bottom edge
    assert not grid[33, 53:66].any()  # the 0.3 prediction is not drawn
    assert os.listdir(tmp_path) == ["detections.png"]


def test_pr_curves_and_training_curves_are_written(tmp_path):
    recall = np.linspace(0, 1, 11)
    plot_pr_curves(str(tmp_path / "pr.png"), {
        "circle": PRCurve(recall, 1 - recall / 2, 0.75, 11),
        "square": PRCurve(np.zeros(0), np.zeros(0), 0.0, 0),       # no ground truth
        "triangle": PRCurve(np.zeros(0), np.zeros(0), 0.0, 11)})   # never detected
    rows = [{"epoch": "0.5", "iteration": "1", "loss": "3.0", "cls_loss": "2.0",
             "box_loss": "1.0", "lr": "0.1", "val_map": ""},
            {"epoch": "1.0", "iteration": "2", "loss": "", "lr": "", "val_map": "0.25"}]
    plot_training_curves(str(tmp_path / "curves.png"), rows)
    plot_training_curves(str(tmp_path / "empty.png"), [])
    for name in ("pr.png", "curves.png", "empty.png"):
        assert read_rgb(tmp_path / name).shape[2] == 3
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "empty.png", "pr.png"]
