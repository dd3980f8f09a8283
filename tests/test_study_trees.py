"""Study v3's protocol (bench/study_trees.py): the order of runs it asks for and the choices it
makes, on stand-in val figures (no training)."""
import pytest

from ssd_nobias.analysis import study_v3


@pytest.fixture(scope="module")
def study():
    return study_v3


def drive(study, curve, warmup_gain=0.0, seed_noise=0.001):
    """Run plan() to the end with val AP50 = curve(k) (+ warmup_gain at the longer warmup, a
    small seed offset); the runs asked for, in order, and the final choice."""
    val, asked = {}, []
    while True:
        step = study.plan("nobias", val)
        if not isinstance(step, study.Run):
            return asked, step
        assert (step.k, step.warmup, step.seed) not in val
        asked.append(step)
        val[(step.k, step.warmup, step.seed)] = curve(step.k) + seed_noise * step.seed + (
            warmup_gain if step.warmup == study.PROTOCOL["warmups"][1] else 0.0)


def test_interior_optimum_is_refined_by_sqrt2_and_bracketed(study):
    asked, (k, warmup) = drive(study, lambda k: 0.5 - 0.01 * (k - 1) ** 2)
    tried = sorted({r.k for r in asked})
    assert tried == [-2, -1, 0, 1, 2]
    assert k == 1 and warmup == 50
    assert [r.seed for r in asked if (r.k, r.warmup) == (1, 50)] == [1, 2, 3, 4, 5]
    # the tuning seeds only, at every lr and at the other warmup
    assert {r.seed for r in asked if r.k != 1 or r.warmup != 50} == {1, 2}
    assert {r.warmup for r in asked} == {50, 200}


def test_optimum_past_the_grid_edge_extends_it_by_factor_two(study):
    asked, (k, _) = drive(study, lambda k: 0.5 - 0.01 * abs(k + 5))
    tried = sorted({r.k for r in asked})
    # -2 best of the first three, then -4, then -4 and -6 tie (the smaller lr wins, at the
    # edge): -8; -6 is best, its sqrt(2) neighbours -7 and -5 are tried and -5 wins
    assert tried == [-8, -7, -6, -5, -4, -2, 0, 2] and k == -5


def test_grid_stops_at_its_range_and_warmup_can_win(study):
    asked, (k, warmup) = drive(study, lambda k: 0.1 * k, warmup_gain=0.05)
    assert k == study.PROTOCOL["k_range"][1] and warmup == 200
    assert max(r.k for r in asked) == study.PROTOCOL["k_range"][1]


def test_learning_rates_are_the_sqrt2_grid(study):
    assert study.lr_of(0) == 0.025 and study.lr_of(2) == 0.05
    assert study.lr_of(-1) == pytest.approx(0.025 / 2 ** 0.5)
    run = study.Run("batchnorm_reparam", -1, 200, 3)
    assert run.key == "batchnorm_reparam-k-1-w200-s3"
    args = study.overrides(run, "/out", "/data")
    assert "train.warmup_iters=200" in args and "model.conv_weights=centered" in args
