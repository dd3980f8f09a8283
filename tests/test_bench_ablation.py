"""bench/ablation.py: every arm is a valid override of the demo recipe and means what its name
says, and the summary is the statistics of the runs it was given."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from ablation import ARMS, SCREEN, format_table, summarize  # noqa: E402

from ssd_nobias.config import load_config  # noqa: E402
from ssd_nobias.model import BIAS_FREE_RECIPE, STOCK_RECIPE  # noqa: E402


def resolved(arm: str) -> dict:
    """The recipe keys an arm trains with ('auto' as the model resolves it)."""
    cfg = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"), ARMS[arm])
    auto = BIAS_FREE_RECIPE if cfg.model.norm == "nobias" else STOCK_RECIPE
    return {"norm": cfg.model.norm, **{key: auto[key] if cfg.model[key] == "auto" else
                                       cfg.model[key] for key in auto}}


@pytest.mark.parametrize("arm", sorted(set(ARMS) - {"batchnorm", "recipe"}))
def test_every_bias_free_arm_trains_what_its_name_says(arm):
    parts = set(arm.split("+"))
    assert resolved(arm) == {
        "norm": "nobias", "conv_weights": "centered" if "centered" in parts else "plain",
        "depthwise_weights": "dc_positive" if "dc_positive" in parts else "plain",
        "activation": "leaky" if "leaky" in parts else "relu"}


def test_recipe_is_the_shipped_default_and_batchnorm_is_stock():
    assert resolved("recipe") == resolved("centered+dc_positive")
    assert resolved("batchnorm") == {"norm": "batchnorm", **STOCK_RECIPE}


def test_screen_arms_exist():
    assert set(SCREEN) <= set(ARMS)


def test_summarize_gives_each_arms_statistics():
    runs = {"a": {1: {"map": 0.5, "dead": 0.1}, 2: {"map": 0.7, "dead": 0.3}},
            "b": {1: {"map": 0.25, "dead": 0.0}}}
    table = summarize(runs)
    assert table["a"] == {"seeds": 2, "map_mean": pytest.approx(0.6),
                          "map_std": pytest.approx(0.1414213562), "map_min": 0.5, "map_max": 0.7,
                          "dead_mean": pytest.approx(0.2), "dead_max": 0.3}
    assert table["b"]["seeds"] == 1 and table["b"]["map_std"] == 0.0
    lines = format_table(table).splitlines()
    assert len(lines) == 3 and lines[1].startswith("a ") and "0.6000 +- 0.1414" in lines[1]
