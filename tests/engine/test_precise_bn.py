"""Norm statistics recomputed before folding: exactly the mean of each batch's statistics, the
weights untouched, and `export_ssd.py --recalibrate N` exporting the recomputed model."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

from ssd_nobias.model.norm import NoBiasBatchNorm
from ssd_nobias.engine.precise_bn import norm_layers, recalibrate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def small_net():
    """conv -> NoBiasBatchNorm -> ReLU -> stock BatchNorm, stale statistics in both norms."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1, use_bias=False, in_channels=3),
            NoBiasBatchNorm(in_channels=4), nn.Activation("relu"), nn.BatchNorm(in_channels=4))
    net.initialize(mx.init.Xavier())
    net[1].gamma.set_data(mx.nd.array([0.5, 1, 2, 3]))
    net[3].running_mean.set_data(mx.nd.full(4, 7.0))
    net[3].running_var.set_data(mx.nd.full(4, 9.0))
    return net


def test_statistics_become_the_mean_of_each_batchs_statistics():
    net = small_net()
    rng = np.random.RandomState(0)
    batches = [rng.normal(1, 2, (3, 3, 6, 6)).astype(np.float32) for _ in range(4)]
    weights = {k: v.data().asnumpy().copy() for k, v in net.collect_params().items()
               if not k.endswith(("running_mean", "running_var"))}

    m2, means, variances = [], [], []
    for x in batches:  # the same forward in NumPy: batch statistics at every layer
        y = net[0](mx.nd.array(x)).asnumpy().astype(np.float64)
        m2.append((y ** 2).mean(axis=(0, 2, 3)))
        gamma = net[1].gamma.data().asnumpy().reshape(1, -1, 1, 1)
        z = np.maximum(gamma * y / np.sqrt(m2[-1].reshape(1, -1, 1, 1) + 1e-5), 0)
        means.append(z.mean(axis=(0, 2, 3)))
        variances.append(z.var(axis=(0, 2, 3)))

    change = recalibrate(net, iter(mx.nd.array(x) for x in batches), 4)
    np.testing.assert_allclose(net[1].running_var.data().asnumpy(), np.mean(m2, 0), rtol=1e-5)
    assert not net[1].running_mean.data().asnumpy().any()  # NoBiasBatchNorm's stays 0
    np.testing.assert_allclose(net[3].running_mean.data().asnumpy(), np.mean(means, 0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net[3].running_var.data().asnumpy(), np.mean(variances, 0),
                               rtol=1e-4)
    for k, v in weights.items():  # weights frozen
        np.testing.assert_array_equal(net.collect_params()[k].data().asnumpy(), v)
    assert [b._kwargs["momentum"] for b in norm_layers(net)] == [0.9, 0.9]  # restored
    assert change[net[3].name] == pytest.approx(
        np.max(np.abs(np.mean(variances, 0) - 9) / 9), rel=1e-4)


def test_too_few_batches_is_an_error_and_leaves_momentum_alone():
    from ssd_nobias.errors import DataError

    net = small_net()
    with pytest.raises(DataError, match="needs 3 batches, the data gave 1"):
        recalibrate(net, iter([mx.nd.ones((2, 3, 6, 6))]), 3)
    assert [b._kwargs["momentum"] for b in norm_layers(net)] == [0.9, 0.9]


def test_training_batches_are_augmented_the_same_way_every_time(alive_model):
    from ssd_nobias.engine.precise_bn import training_batches

    cfg = alive_model[0].clone()
    cfg.defrost()
    cfg.train.batch_size = 4
    first, again = (list(training_batches(cfg, 3)) for _ in range(2))
    assert [b.shape for b in first] == [(4, 3, 300, 300)] * 3
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    assert not np.array_equal(first[0].asnumpy(), first[1].asnumpy())


@pytest.mark.slow
@pytest.mark.subprocess
def test_export_recalibrates_then_exports_what_it_recomputed(alive_model, tmp_path):
    cfg, params, _, _ = alive_model
    config = tmp_path / "config.yaml"
    config.write_text(cfg.dump())
    out = tmp_path / "export"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "export_ssd.py"),
                           "--config", str(config), "--params", params, "--out", str(out),
                           "--recalibrate", "2", "train.batch_size=4"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "export_report.json") as f:
        report = json.load(f)
    r = report["recalibration"]
    assert (r["batches"], r["batch"], r["images"]) == (2, 4, 8)
    assert r["file"] == str(out / "recalibrated.params") and os.path.isfile(r["file"])
    assert r["running_var_change_max"] > 0 and 0 <= r["val_after"] <= 1
    assert report["params"] == r["file"]  # the deploy graph folds the recomputed statistics
    assert max(report["parity"]["class_logits"], report["parity"]["box_offsets"]) <= 1e-4
    assert "recalibrated" in done.stdout and "-> " in done.stdout
