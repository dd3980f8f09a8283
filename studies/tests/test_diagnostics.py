"""Dead channels and filter sums per unit, their trajectory, and
studies/scripts/dead_channels.py."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias_studies.diagnostics import (UnitActivity, dead_fraction, spatial_share,
                                             trajectory, unit_activity)
from ssd_nobias.model.ssd import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "studies", "scripts")


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
    assert (dw1.active == 0).tolist() == dw1.dead.tolist()
    assert ((dw1.active >= 0) & (dw1.active <= 1)).all()
    assert ((dw1.spatial_share >= 0) & (dw1.spatial_share <= 1 + 1e-6)).all()
    assert bool(dw1.filter_sums[0] < 0) is dead
    if mode == "dc_positive":
        assert (dw1.filter_sums >= 0).all()
        np.testing.assert_allclose(dw1.filter_sums[0], np.abs(w[0].sum()), rtol=1e-5)


def test_spatial_share_tells_a_map_from_an_image_level_signal():
    a = np.zeros((2, 3, 2, 2))
    a[:, 0] = [[0, 1], [0, 1]]  # the same pattern in both images: all variation is spatial
    a[1, 1] = 1  # constant within each image, different between them: none is
    np.testing.assert_array_equal(spatial_share(a), [1.0, 0.0, 0.0])  # channel 2: constant
    a[1, 0] += 1  # both kinds: within 0.5, overall sqrt(0.5)
    np.testing.assert_allclose(spatial_share(a)[0], 0.5 / np.sqrt(0.5))


def unit(name, dead, sums, depthwise=True, active=None, share=None):
    dead = np.array(dead, bool)
    active = np.where(dead, 0.0, 0.5) if active is None else np.array(active, float)
    share = np.ones(len(dead)) if share is None else np.array(share, float)
    return UnitActivity(name, depthwise, dead, np.array(sums, float), active, share)


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
    assert t["units"]["dw1"]["active"] == [0.5, 0.375, 0.125]
    assert t["depthwise_active"] == [0.5, 0.375, 0.125]  # pw1 is not depthwise


def test_trajectory_follows_active_fraction_and_spatial_share_per_unit():
    snapshots = {
        "init": [unit("dw1", [0, 0], [1, 1], active=[0.5, 0.7], share=[0.9, 0.9]),
                 unit("dw2", [0, 0, 0, 0], [1] * 4, active=[0.5] * 4, share=[0.8] * 4)],
        "last": [unit("dw1", [0, 0], [1, 1], active=[0.1, 0.3], share=[0.5, 0.7]),
                 unit("dw2", [0, 0, 0, 0], [1] * 4, active=[0.2] * 4, share=[0.4] * 4)]}
    t = trajectory(snapshots)
    assert t["units"]["dw1"]["active"] == [0.6, 0.2]
    assert t["units"]["dw1"]["spatial_share"] == [0.9, 0.6]
    assert t["depthwise_active"] == [round(3.2 / 6, 4), round(1.2 / 6, 4)]  # per channel
    assert t["depthwise_spatial_share"] == [round(5 / 6, 4), round(2.8 / 6, 4)]


@pytest.mark.slow
@pytest.mark.subprocess
def test_dead_channels_script_follows_a_run_from_init(tiny_run, tmp_path):
    done = subprocess.run([sys.executable, os.path.join(SCRIPTS, "dead_channels.py"),
                           tiny_run, "--images", "2", "--json", str(tmp_path / "d.json")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "d.json") as f:
        t = json.load(f)[tiny_run]
    assert t["snapshots"] == ["init", "0001", "0002", "last"]
    assert len(t["units"]) == 35 and all(0 <= d <= 1 for d in t["dead"])
    assert t["units"]["dw1"]["depthwise"] and t["units"]["dw1"]["channels"] == 8
    assert len(t["depthwise_active"]) == len(t["depthwise_spatial_share"]) == 4
    assert "depthwise:" in done.stdout and "of filters start with a negative sum" in done.stdout
