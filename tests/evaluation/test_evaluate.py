"""Metrics on hand-made cases with known answers, every image evaluated once, COCO via
pycocotools, and the report files eval_ssd.py writes."""
import contextlib
import io
import json
import os

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.data.coco import COCOFormatDetection
from ssd_nobias.data.voc import VOCFormatDetection
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.evaluation.evaluate import (Detections, EvalSettings, VocScorer, evaluate,
                                            format_table, write_report)
from tests.data_files import CLASSES, obj, write_coco, write_item

SIZE = 64


class ReplayPredictor:
    """Stands in for a network: returns given per-image detections (original pixels) in order."""

    def __init__(self, per_image, image_sizes):
        self.per_image, self.sizes, self.next = per_image, image_sizes, 0

    def __call__(self, x):
        n = x.shape[0]
        rows = max([1] + [len(d[0]) for d in self.per_image[self.next:self.next + n]])
        ids = -np.ones((n, rows, 1), np.float32)
        scores = -np.ones((n, rows, 1), np.float32)
        boxes = -np.ones((n, rows, 4), np.float32)
        for i in range(n):
            b, l, s = self.per_image[self.next + i]
            w, h = self.sizes[self.next + i]
            k = len(b)
            boxes[i, :k] = np.asarray(b, np.float32) * ([SIZE / w, SIZE / h] * 2)
            ids[i, :k, 0], scores[i, :k, 0] = l, s
        self.next += n
        return tuple(mx.nd.array(a, ctx=x.context) for a in (ids, scores, boxes))


def voc_set(tmp_path, n=5):
    for i in range(n):
        write_item(tmp_path, f"{i}", [obj("circle", (5, 5, 30 + i, 30)),
                                      obj("square", (40, 10, 70, 50), difficult=i % 2)],
                   size=(80 + i, 60), split="val")
    return VOCFormatDetection(str(tmp_path), [("", "val")], CLASSES)


def gt_as_predictions(ds):
    out = []
    for i in range(len(ds)):
        label = ds[i][1]
        out.append((label[:, :4], label[:, 4], np.linspace(0.9, 0.8, len(label))))
    return out


def run(ds, per_image, ctx=(mx.cpu(),), batch_size=2, metric="voc07", num_samples=0, **kw):
    sizes = [ds.image_size(i) for i in range(len(ds))]
    return evaluate(ReplayPredictor(per_image, sizes), ds, CLASSES, list(ctx),
                    Preprocess(SIZE, (0.5,) * 3, (0.25,) * 3),
                    EvalSettings(batch_size, 0, metric, num_samples), **kw)


def test_perfect_detections_score_one(tmp_path):
    ds = voc_set(tmp_path)
    result = run(ds, gt_as_predictions(ds), num_samples=2)
    # the 11-point AP is a sum of 11 elevenths: 1 up to rounding
    assert result.metrics == pytest.approx({"VOC07 mAP": 1.0, "VOC mAP": 1.0}, abs=1e-12)
    assert result.per_class["circle"] == pytest.approx(1.0, abs=1e-12)
    assert np.isnan(result.per_class["triangle"])  # no ground truth
    assert result.num_images == 5 and len(result.samples) == 2
    np.testing.assert_allclose(result.samples[1].boxes, ds[1][1][:, :4], atol=1e-3)


@pytest.mark.parametrize("batch_size, ctx", [(1, 1), (2, 2), (3, 2), (4, 1), (16, 2)])
def test_every_image_evaluated_once(tmp_path, batch_size, ctx):
    ds = voc_set(tmp_path, n=7)
    predictions = gt_as_predictions(ds)
    predictions[6] = (np.zeros((0, 4)), np.zeros(0), np.zeros(0))  # the last image: missed
    result = run(ds, predictions, ctx=[mx.cpu(i) for i in range(ctx)], batch_size=batch_size)
    assert result.num_images == 7
    # 7 circles, 6 found: recall stops at 6/7, so 9 of the 11 points (0 to .8) have precision 1;
    # an evaluation that dropped the last image would find 6 of 6 and score 1.0
    assert result.per_class["circle"] == pytest.approx(9 / 11)


def test_known_pr_curve_gives_known_ap():
    scorer = VocScorer(["a"])
    gt = np.array([[0, 0, 10, 10, 0, 0], [20, 0, 30, 10, 0, 0], [40, 0, 50, 10, 0, 0],
                   [60, 0, 70, 10, 0, 0], [80, 0, 90, 10, 0, 1]], np.float32)
    # by falling score: TP, FP, TP, difficult (ignored), TP; one object never found
    boxes = np.array([[0, 0, 10, 10], [0, 50, 10, 60], [20, 0, 30, 10], [80, 0, 90, 10],
                      [40, 0, 50, 10]], np.float32)
    scorer.update(Detections(0, boxes, np.zeros(5, int), np.array([.9, .8, .7, .65, .6]), gt))
    metrics, per_class, curves = scorer.result()
    recall, precision, ap, objects = curves["a"]
    assert objects == 4  # the difficult one is not counted
    # the difficult match repeats the previous point (it counts neither way)
    np.testing.assert_allclose(recall, [.25, .25, .5, .5, .75])
    np.testing.assert_allclose(precision, [1, .5, 2 / 3, 2 / 3, .75])
    # 11-point: precision 1 at recall 0, .1, .2; .75 at .3 ... .7; 0 at .8, .9, 1
    assert metrics["VOC07 mAP"] == pytest.approx((3 * 1 + 5 * .75) / 11)
    # all-point: .25 * 1 + .5 * .75
    assert metrics["VOC mAP"] == pytest.approx(.625)


def test_a_class_with_objects_and_no_detection_is_not_a_class_without_ground_truth():
    """pr_curves.png draws a class from its curve: one never detected has objects (AP 0), one
    absent from the val set has none."""
    scorer = VocScorer(["a", "b", "c"])
    gt = np.array([[0, 0, 10, 10, 0, 0], [20, 0, 30, 10, 1, 0], [40, 0, 50, 10, 1, 0]],
                  np.float32)
    scorer.update(Detections(0, np.array([[0, 0, 10, 10]], np.float32), np.zeros(1, int),
                             np.array([.9]), gt))
    _, _, curves = scorer.result()
    assert curves["a"].objects == 1 and curves["a"].ap == pytest.approx(1.0)
    assert curves["b"].objects == 2 and len(curves["b"].recall) == 0 and curves["b"].ap == 0.0
    assert curves["c"].objects == 0


def test_no_ground_truth_is_an_error():
    scorer = VocScorer(["a"])
    scorer.update(Detections(0, np.zeros((0, 4)), np.zeros(0, int), np.zeros(0),
                             np.zeros((0, 6))))
    with pytest.raises(ValueError, match="no .*ground-truth"):
        scorer.result()


def test_coco_ap_equals_pycocotools_on_detections_json(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    write_coco(tmp_path, 4, [(0, 7, [10, 5, 20, 10]), (0, 3, [30, 20, 30, 25]),
                             (1, 3, [5, 5, 60, 40]), (3, 7, [2, 2, 10, 12])])
    ds = COCOFormatDetection(str(tmp_path), ["instances_val"])
    rng = np.random.RandomState(0)
    predictions = []
    for i in range(len(ds)):
        label = ds[i][1]
        noisy = label[:, :4] + rng.uniform(-3, 3, size=(len(label), 4))
        fp = np.array([[1, 1, 20, 20]])
        predictions.append((np.vstack([noisy, fp]), np.append(label[:, 4], 0),
                            np.append(rng.uniform(.5, 1, len(label)), .7)))
    out = tmp_path / "eval"
    os.makedirs(out)
    result = run(ds, predictions, metric="coco", out_dir=str(out))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "annotations" / "instances_val.json"))
        check = COCOeval(gt, gt.loadRes(str(out / "detections.json")), "bbox")
        check.evaluate(), check.accumulate(), check.summarize()
    assert result.metrics["AP"] == pytest.approx(check.stats[0])
    assert result.metrics["AP50"] == pytest.approx(check.stats[1])
    assert 0.2 < result.metrics["AP"] < 1.0
    assert {d["category_id"] for d in json.load(open(out / "detections.json"))} <= {3, 7}


def test_coco_metric_needs_coco_data(tmp_path):
    ds = voc_set(tmp_path)
    with pytest.raises(ValueError, match="COCO-format"):
        run(ds, gt_as_predictions(ds), metric="coco")


def test_report_files(tmp_path):
    ds = voc_set(tmp_path / "data")
    result = run(ds, gt_as_predictions(ds), num_samples=3)
    write_report(result, ds, CLASSES, str(tmp_path / "out"))
    report = json.load(open(tmp_path / "out" / "eval.json"))
    assert report["metric"] == "voc07" and report["value"] == 1.0  # rounded to 6 places
    assert report["per_class_ap"] == {"circle": 1.0, "square": 1.0, "triangle": None}
    assert report["num_images"] == 5 and report["images_per_s"] > 0
    # ground truth as predictions: every box found as its own class, nothing else
    counts = np.array(report["confusion_matrix"]["counts"])
    assert report["confusion_matrix"]["classes"] == [*CLASSES, "background"]
    assert (counts == np.diag(np.diag(counts))).all() and counts[-1, -1] == 0
    assert counts.trace() == 5 + 3  # five circles, the three squares not marked difficult
    for name in ("pr_curves.png", "detections.png", "confusion_matrix.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    table = format_table(result)
    assert "circle" in table and "VOC07 mAP" in table and "n/a" in table
