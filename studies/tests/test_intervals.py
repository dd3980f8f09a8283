"""The intervals and verdicts of the study reports: the image bootstrap, the two-level one
(seeds, then images), and how an interval reads against the margin."""
import numpy as np
import pytest

from ssd_nobias.evaluation.ap_stats import match_image, voc07_ap50
from ssd_nobias_studies.intervals import (direction, paired_bootstrap, two_level_bootstrap,
                                          verdict)


def arms(n_images=30, seed=3):
    """Per-image matches of one detector (good) and of the same detections with every third
    box moved off its object (worse: a miss and a false positive), on the same images."""
    rng = np.random.default_rng(seed)
    good, worse = [], []
    for _ in range(n_images):
        k = int(rng.integers(1, 5))
        xy = rng.uniform(0, 150, (k, 2))
        gt = np.concatenate([xy, xy + rng.uniform(15, 50, (k, 2)), np.zeros((k, 1)),
                             np.zeros((k, 1))], 1)
        boxes = np.concatenate([gt[:, :4] + rng.normal(0, 2, (k, 4)),
                                np.tile(rng.uniform(0, 100, (1, 2)), (1, 2)) + [0, 0, 20, 20]])
        scores = np.round(rng.uniform(0.3, 1.0, len(boxes)), 3)
        labels = np.zeros(len(boxes), int)
        good.append(match_image(boxes, labels, scores, gt))
        moved = boxes.copy()
        moved[::3] += 60
        worse.append(match_image(moved, labels, scores, gt))
    return good, worse


def test_the_image_bootstrap_brackets_the_difference_and_pairs_images():
    good, worse = arms()
    out = paired_bootstrap([good, good], [worse], "ap50", samples=200)
    assert out["difference"] == pytest.approx(voc07_ap50(good) - voc07_ap50(worse))
    assert out["low"] <= out["difference"] <= out["high"] and out["levels"] == "images"
    same = paired_bootstrap([good], [good], "ap", samples=50)
    assert same == dict(same, difference=0.0, low=0.0, high=0.0)  # paired: no spread at all
    with pytest.raises(ValueError, match="same test images"):
        paired_bootstrap([good], [good[:-1]], "ap50")


def test_a_failed_seed_widens_the_two_level_interval_to_what_the_seeds_allow():
    """Arm [good, worse] against [good]: with the seeds fixed every resample is half the
    worse run's deficit, an interval below 0; resampling seeds draws [good, good] a quarter of
    the time, a difference of exactly 0, so the two-level interval reaches 0 and goes lower."""
    good, worse = arms()
    images = paired_bootstrap([good, worse], [good], "ap50", samples=400)
    both = two_level_bootstrap([good, worse], [good], "ap50", samples=400)
    assert both["difference"] == images["difference"] < 0
    assert images["high"] < 0 and both["high"] == 0.0
    assert both["low"] < images["low"] and both["levels"] == "seeds, images"
    assert both["runs"] == [2, 1] and both["images"] == 30


def test_variants_of_the_same_runs_draw_their_seeds_together():
    good, worse = arms()
    runs = [good, worse]
    same = two_level_bootstrap(runs, runs, "ap", samples=100, same_runs=True)
    assert (same["difference"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    apart = two_level_bootstrap(runs, runs, "ap", samples=100)
    assert apart["difference"] == 0.0 and apart["low"] < 0 < apart["high"]
    with pytest.raises(ValueError, match="as many runs"):
        two_level_bootstrap(runs, [good], "ap", same_runs=True)


@pytest.mark.parametrize("low, high, says, way", [
    (0.001, 0.02, "superior", "ahead"), (-0.005, 0.01, "non-inferior", "either"),
    (-0.009, -0.001, "non-inferior", "behind"), (-0.03, -0.011, "inferior", "behind"),
    (-0.02, -0.005, "undecided", "behind"), (-0.02, 0.01, "undecided", "either")])
def test_an_interval_reads_against_the_one_point_margin_and_zero(low, high, says, way):
    assert verdict(low, high, 0.01) == says and direction(low, high) == way
