"""The diagnosis by IoU threshold (studies/ssd_nobias_studies/diagnosis.py): AP at each
threshold is COCOeval's, and the two-level difference holds what the arms' matches hold."""
import numpy as np

from ssd_nobias.evaluation.ap_stats import Pooled, match_image
from ssd_nobias_studies.diagnosis import ap_by_iou, by_iou


def detector(shift, n_images=12, seed=0):
    """Per-image matches of boxes `shift` pixels off 40-px objects: a loose fit passes the low
    IoU thresholds and fails the high ones."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        xy = np.array([[10.0, 10.0], [100.0, 100.0]]) + rng.uniform(0, 5, (2, 2))  # apart
        gt = np.concatenate([xy, xy + 40, np.zeros((2, 2))], 1)
        boxes = gt[:, :4] + [shift, 0, shift, 0]
        images.append(match_image(boxes, np.zeros(2, int), np.array([0.9, 0.8]), gt))
    return images


def test_ap_by_iou_averages_to_cocos_ap():
    images = detector(6)
    pooled = Pooled(images)
    aps = ap_by_iou(pooled, np.arange(len(images)))
    assert np.isclose(aps.mean(), pooled.coco_ap()["AP"])
    # IoU of a 40-px box moved 6 px: 34 * 40 / (46 * 40) = 0.739: found up to 0.70, not after
    assert (aps[:5] == 1).all() and (aps[5:] == 0).all()


def test_a_loose_fit_loses_only_at_high_thresholds_and_the_interval_says_so():
    tight, loose = [detector(0, seed=s) for s in (1, 2)], [detector(6, seed=s) for s in (1, 2)]
    result = by_iou(loose, tight, samples=100)
    diff, low, high = (np.asarray(result[k]) for k in ("difference", "low", "high"))
    assert np.allclose(diff[:5], 0) and (diff[5:] < -0.99).all()
    assert (high[5:] < 0).all() and np.allclose(low[:5], 0) and np.allclose(high[:5], 0)
    assert result["runs"] == [2, 2] and result["iou"][0] == 0.5 and result["iou"][-1] == 0.95
