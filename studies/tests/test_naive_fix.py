"""The naive fix (arms (c), (g), (h)): a stock-BatchNorm checkpoint with its shifts dropped,
exported through the package's ordinary bias-free export."""
import os

import mxnet as mx
import numpy as np
import pytest

from conftest import CLASSES, DEMO_CONFIG, make_tiny_data, save_stock_model
from ssd_nobias.config import load_config
from ssd_nobias.export.deploy import deploy_raw_outputs, norm_shifts, raw_outputs, relative_error
from ssd_nobias_studies.naive_fix import drop_shifts, export_zero_shift

@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    """A demo-model checkpoint with stock BatchNorm whose norms have shifts, and the bias-free
    config a user would export it with."""
    data = make_tiny_data(tmp_path_factory, "naive", train=4, val=2, seed=3)
    base = tmp_path_factory.mktemp("stock")
    common = [f"data.root={data}", f"output_dir={base}"]
    cfg = load_config(DEMO_CONFIG, common)
    bn_cfg = load_config(DEMO_CONFIG, common + ["model.norm=batchnorm"])
    params = str(base / "bn.params")
    net = save_stock_model(bn_cfg, params)
    return cfg, bn_cfg, net, params, base


def test_dropping_the_shifts_removes_betas_and_zeroes_means(stock):
    cfg, _, _, params, base = stock
    bias_free, written, shifts = drop_shifts(cfg, params, str(base / "dropped.params"))
    arrays = mx.nd.load(written)
    assert not [k for k in arrays if k.endswith(".beta")]
    means = [k for k in arrays if k.endswith(".running_mean")]
    assert len(means) == 35 and all(arrays[k].abs().sum().asscalar() == 0 for k in means)
    assert shifts == {k: v for k, v in norm_shifts(params).items()} and len(shifts) == 35
    assert set(norm_shifts(written).values()) == {0.0}
    # the stock model's plain convs and ReLU, NoBiasBatchNorm in place of its norms
    assert bias_free.model.norm == "nobias" and bias_free.model.conv_weights == "plain"
    assert bias_free.model.activation == "relu"


@pytest.mark.slow
def test_the_naive_fix_exports_the_stock_model_without_its_shifts(stock):
    cfg, _, net, params, base = stock
    out = str(base / "forced")
    report = export_zero_shift(cfg, params, out)
    assert report["bias_free_layers"] == 35 and report["parity"]["class_logits"] <= 1e-4
    price = report["forced_zero_shift"]
    assert len(price["layers"]) == 35 and min(price["layers"].values()) > 0
    assert 0 <= price["before"] <= 1 and 0 <= price["after"] <= 1
    # the deploy graph computes what the stock model computes with beta and mean set to 0
    for name, param in net.collect_params().items():
        if name.endswith(("running_mean", "beta")):
            param.set_data(mx.nd.zeros(param.shape))
    x = mx.nd.array(np.random.RandomState(1).uniform(-1, 1, (2, 3, 300, 300)))
    want = raw_outputs(net, x)
    got = deploy_raw_outputs(os.path.join(out, cfg.model.name), x, len(CLASSES))
    assert relative_error(got[0], want[0]) <= 1e-4 and relative_error(got[1], want[1]) <= 1e-4
