"""ap_stats: the per-image scoring equals GluonCV's VOC07 metric and pycocotools exactly, and
the paired bootstrap brackets a known difference."""
import contextlib
import io
import json

import numpy as np
import pytest
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric

from ssd_nobias.evaluation.ap_stats import (Pooled, coco_ap, coco_precision, match_image,
                                            matches_from_json, matches_of, matches_to_json,
                                            voc07_ap50)


def scene(rng, n_images=25, classes=2):
    """Images of objects (some difficult) and detections: jittered hits, duplicates, misses,
    background boxes and tied scores, all the cases the matching rules decide."""
    out = []
    for _ in range(n_images):
        k = rng.integers(0, 7)
        xy = rng.uniform(0, 150, (k, 2))
        wh = rng.uniform(12, 60, (k, 2))
        gt = np.concatenate([xy, xy + wh, rng.integers(0, classes, (k, 1)),
                             (rng.random((k, 1)) < 0.15)], 1)
        boxes, labels = [], []
        for row in gt:
            for _ in range(rng.integers(0, 3)):  # 0-2 detections per object
                boxes.append(row[:4] + rng.normal(0, 0.15 * (row[2] - row[0]), 4))
                labels.append(row[4] if rng.random() < 0.9 else (row[4] + 1) % classes)
        for _ in range(rng.integers(0, 4)):  # background
            p = rng.uniform(0, 150, 2)
            boxes.append(np.concatenate([p, p + rng.uniform(10, 50, 2)]))
            labels.append(rng.integers(0, classes))
        boxes = np.array(boxes).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        scores = np.round(rng.random(len(boxes)), 2)  # ties included
        out.append((boxes, np.array(labels, int), scores, gt))
    return out


def gluoncv_voc07(images):
    metric = VOC07MApMetric(iou_thresh=0.5)
    for boxes, labels, scores, gt in images:
        metric.update(boxes[None], labels[None, :, None], scores[None, :, None], gt[None, :, :4],
                      gt[None, :, 4:5], gt[None, :, 5:6])
    return metric.get()[1]  # without class names: ('mAP', value)


def pycocotools_ap(images):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    anns, dets = [], []
    for i, (boxes, labels, scores, gt) in enumerate(images):
        for row in gt:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(row[4]),
                         "bbox": [row[0], row[1], row[2] - row[0], row[3] - row[1]],
                         "area": (row[2] - row[0]) * (row[3] - row[1]),
                         "iscrowd": int(row[5])})
        for b, c, s in zip(boxes, labels, scores):
            dets.append({"image_id": i, "category_id": int(c), "score": float(s),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in range(len(images))], "annotations": anns,
                  "categories": [{"id": c} for c in range(2)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0], ev.stats[1], ev.stats[2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_gluoncv_and_pycocotools(seed):
    images = scene(np.random.default_rng(seed))
    matches = [match_image(*image) for image in images]
    assert voc07_ap50(matches) == pytest.approx(gluoncv_voc07(images), abs=1e-12)
    ours = coco_ap(matches)
    ap, ap50, ap75 = pycocotools_ap(images)
    assert (ours["AP"], ours["AP50"], ours["AP75"]) == pytest.approx((ap, ap50, ap75), abs=1e-12)


@pytest.mark.parametrize("seed", [5, 6])
def test_a_resample_scores_as_its_images_do_in_gluoncv_and_pycocotools(seed):
    """What the bootstrap draws: images with repeats, scored from the pooled matches, give what
    the reference implementations give on the resampled images themselves."""
    rng = np.random.default_rng(seed)
    images = scene(rng, n_images=30)
    pooled = Pooled([match_image(*image) for image in images])
    idx = rng.integers(0, len(images), len(images))
    drawn = [images[i] for i in idx]
    assert pooled.voc07_ap50(idx) == pytest.approx(gluoncv_voc07(drawn), abs=1e-12)
    ours = pooled.coco_ap(idx)
    assert (ours["AP"], ours["AP50"], ours["AP75"]) == pytest.approx(pycocotools_ap(drawn),
                                                                     abs=1e-12)
    assert len(set(idx)) < len(idx)  # repeats drawn


def test_class_ap50_is_gluoncvs_per_class_ap_and_averages_to_the_map():
    images = scene(np.random.default_rng(7), n_images=30, classes=3)
    metric = VOC07MApMetric(iou_thresh=0.5, class_names=["a", "b", "c"])
    for boxes, labels, scores, gt in images:
        metric.update(boxes[None], labels[None, :, None], scores[None, :, None], gt[None, :, :4],
                      gt[None, :, 4:5], gt[None, :, 5:6])
    names, values = metric.get()
    pooled = Pooled([match_image(*image) for image in images])
    per_class = pooled.voc07_class_ap50()
    assert sorted(per_class) == [0, 1, 2]
    assert [per_class[c] for c in range(3)] == pytest.approx(values[:3], abs=1e-12)
    assert pooled.voc07_ap50() == np.mean(list(per_class.values()))


def test_perfect_and_empty_detections():
    gt = np.array([[10, 10, 50, 50, 0, 0], [60, 60, 90, 95, 0, 0]], float)
    perfect = match_image(gt[:, :4], np.zeros(2, int), np.array([0.9, 0.8]), gt)
    none = match_image(np.zeros((0, 4)), np.zeros(0, int), np.zeros(0), gt)
    assert voc07_ap50([perfect]) == pytest.approx(1.0)
    assert coco_ap([perfect])["AP"] == pytest.approx(1.0)
    assert voc07_ap50([none]) == 0.0
    assert coco_ap([none])["AP"] == 0.0


def test_matches_of_reads_records():
    record = {"boxes": [[10, 10, 50, 50]], "labels": [0], "scores": [0.5],
              "gt": [[10, 10, 50, 50, 0, 0]]}
    assert voc07_ap50(matches_of([record])) == pytest.approx(1.0)


def test_matches_written_without_boxes_score_to_the_bit():
    """The compact form a study commits: every figure from it equals the figure from the boxes,
    float32 scores (as the runner writes them) included, ties and difficult objects too."""
    images = [(b, l, np.float32(s).astype(float), g)
              for b, l, s, g in scene(np.random.default_rng(4), 40, 3)]
    matches = [match_image(*image) for image in images]
    back = [matches_from_json(json.loads(json.dumps(matches_to_json(m)))) for m in matches]
    assert voc07_ap50(back) == voc07_ap50(matches)
    np.testing.assert_array_equal(coco_precision(back), coco_precision(matches))
    for m, b in zip(matches, back):
        for c in m.voc:
            np.testing.assert_array_equal(b.voc[c][0], m.voc[c][0])
            np.testing.assert_array_equal(b.coco[c][1], m.coco[c][1])
            np.testing.assert_array_equal(b.coco[c][2], m.coco[c][2])
