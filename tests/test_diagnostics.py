"""Dead channels and filter sums per unit, their trajectory, and bench/dead_channels.py."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.config import load_config
from ssd_nobias.analysis.diagnostics import UnitActivity, dead_fraction, trajectory, unit_activity
from ssd_nobias.model.ssd import get_model
from ssd_nobias.data.synthetic import make_synthetic
from ssd_nobias.engine.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("mode, dead", [("plain", True), ("dc_positive", False)])
@pytest.mark.parametrize("batch_stats", [True, False])
def test_negative_sum_depthwise_filter_kills_its_channel(mode, dead, batch_stats):
    net = get_model("ssd_300_mobilenet0.25_custom", classes=["a"], depthwise_weights=mode)
    net.initialize(mx.init.Xavier(magnitude=2))
    weight = net.features.dw1.conv.weight
    w = weight.data().asnumpy()
    w[0] = -np.abs(w[0]) - 0.01  # every tap negative: a non-negative input gives <= 0
    weight.set_data(mx.nd.array(w))
    x = mx.nd.random.uniform(0, 1, shape=(2, 3, 300, 300))
    units = {u.name: u for u in unit_activity(net.features, x, batch_stats=batch_stats)}
    dw1 = units["dw1"]
    assert dw1.depthwise and not units["pw1"].depthwise
    assert bool(dw1.dead[0]) is dead
    assert bool(dw1.filter_sums[0] < 0) is dead
    if mode == "dc_positive":
        assert (dw1.filter_sums >= 0).all()
        np.testing.assert_allclose(dw1.filter_sums[0], np.abs(w[0].sum()), rtol=1e-5)


def unit(name, dead, sums, depthwise=True):
    return UnitActivity(name, depthwise, np.array(dead, bool), np.array(sums, float))


def test_trajectory_links_the_channels_that_die_to_their_starting_sums():
    snapshots = {
        "init": [unit("dw1", [0, 0, 0, 0], [-1, 2, -3, 4]), unit("pw1", [0, 0], [1, 1], False)],
        "0001": [unit("dw1", [1, 0, 0, 0], [-1, 2, 3, 4]), unit("pw1", [0, 1], [1, 1], False)],
        "last": [unit("dw1", [1, 1, 1, 0], [-1, 2, 3, 4]), unit("pw1", [0, 1], [1, 1], False)]}
    t = trajectory(snapshots)
    assert t["snapshots"] == ["init", "0001", "last"]
    assert t["dead"] == [0.0, 2 / 6, 4 / 6]
    assert t["units"]["dw1"]["dead"] == [0.0, 0.25, 0.75]
    assert t["depthwise_negative_sum_at_start"] == 0.5
    assert t["depthwise_dead_at_end"] == 3
    assert t["depthwise_dead_at_end_with_negative_sum_at_start"] == 2
    assert t["depthwise_channels"] == 4
    assert t["depthwise_dead_rate_negative_start"] == 1.0  # both that started negative died
    assert t["depthwise_dead_rate_non_negative_start"] == 0.5  # one of the other two
    assert dead_fraction(snapshots["last"]) == 4 / 6


@pytest.mark.slow
@pytest.mark.subprocess
def test_dead_channels_script_follows_a_run_from_init(tmp_path):
    root = make_synthetic(str(tmp_path / "data"), train=8, val=2, size=96, seed=0)["root"]
    out = tmp_path / "run"
    train(load_config(os.path.join(ROOT, "configs", "demo_synthetic.yaml"), [
        f"data.root={root}", f"output_dir={out}", "name=t", "data.num_workers=0",
        "train.batch_size=4", "train.epochs=2", "train.warmup_iters=1", "train.val_interval=2",
        "train.save_interval=1", "eval.batch_size=2"]))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "dead_channels.py"),
                           str(out), "--images", "2", "--json", str(tmp_path / "d.json")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "d.json") as f:
        t = json.load(f)[str(out)]
    assert t["snapshots"] == ["init", "0001", "0002", "last"]
    assert len(t["units"]) == 35 and all(0 <= d <= 1 for d in t["dead"])
    assert t["units"]["dw1"]["depthwise"] and t["units"]["dw1"]["channels"] == 8
    assert "depthwise:" in done.stdout and "of filters start with a negative sum" in done.stdout
