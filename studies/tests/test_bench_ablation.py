"""studies/scripts/ablation.py: every arm is a valid override of the demo recipe and means what its
name
says, and the summary is the statistics of the runs it was given."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "studies", "scripts"))
from ablation import ARMS, SCREEN, format_table, summarize  # noqa: E402
from ssd_nobias_studies.study_v2 import resolved_recipe  # noqa: E402

from ssd_nobias.config import load_config  # noqa: E402
from ssd_nobias.model.ssd import STOCK_RECIPE  # noqa: E402


def resolved(arm: str) -> dict:
    """The recipe keys an arm trains with ('auto' as its norm resolves it), as the study
    records them."""
    cfg = load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"), ARMS[arm])
    recipe = resolved_recipe(cfg)
    del recipe["model.leaky_slope"]
    return recipe


@pytest.mark.parametrize("arm", sorted(set(ARMS) - {"batchnorm", "recipe"}))
def test_every_bias_free_arm_trains_what_its_name_says(arm):
    parts = set(arm.split("+"))
    assert resolved(arm) == {
        "model.norm": "nobias",
        "model.conv_weights": "centered" if "centered" in parts else "plain",
        "model.depthwise_weights": "dc_positive" if "dc_positive" in parts else "plain",
        "model.activation": "leaky" if "leaky" in parts else "relu"}


def test_recipe_is_the_shipped_default_and_batchnorm_is_stock():
    assert resolved("recipe") == resolved("centered+dc_positive")
    assert resolved("batchnorm") == {"model.norm": "batchnorm",
                                     **{f"model.{k}": v for k, v in STOCK_RECIPE.items()}}


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
