"""Weight reparametrizations: exact filter sums, gradients through them, plain checkpoints."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from ssd_nobias.model.reparam import ReparamConv2D, effective_weight


@pytest.fixture
def weight():
    return mx.nd.array(np.random.RandomState(0).normal(0, 1, (6, 1, 3, 3)), dtype="float64")


def test_modes_set_each_filter_sum_exactly(weight):
    w = weight.asnumpy()
    sums = w.sum(axis=(1, 2, 3))
    assert (sums < 0).any() and (sums > 0).any()
    np.testing.assert_array_equal(effective_weight(mx.nd, weight, "plain").asnumpy(), w)
    centered = effective_weight(mx.nd, weight, "centered").asnumpy()
    np.testing.assert_allclose(centered.sum(axis=(1, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(centered, w - w.mean(axis=(1, 2, 3), keepdims=True))
    dc = effective_weight(mx.nd, weight, "dc_positive").asnumpy()
    np.testing.assert_allclose(dc.sum(axis=(1, 2, 3)), np.abs(sums), rtol=1e-12)
    np.testing.assert_allclose(dc - dc.mean(axis=(1, 2, 3), keepdims=True), centered, atol=1e-12)
    with pytest.raises(ValueError, match="unknown weight mode 'zero'"):
        effective_weight(mx.nd, weight, "zero")


@pytest.mark.parametrize("mode", ["plain", "centered", "dc_positive"])
@pytest.mark.parametrize("groups", [1, 4])
def test_conv_computes_with_the_effective_weight_and_its_gradient(mode, groups):
    conv = ReparamConv2D(4, 3, in_channels=4, mode=mode, groups=groups, padding=1)
    conv.initialize(mx.init.Normal(1.0))
    conv.cast("float64")
    x = mx.nd.array(np.random.RandomState(1).uniform(0, 1, (2, 4, 5, 5)), dtype="float64")
    w = conv.weight.data().copy()
    eff = effective_weight(mx.nd, w, mode)
    want = mx.nd.Convolution(x, eff, kernel=(3, 3), pad=(1, 1), num_filter=4, num_group=groups,
                             no_bias=True)
    np.testing.assert_allclose(conv(x).asnumpy(), want.asnumpy(), rtol=1e-12)
    np.testing.assert_allclose(conv.deploy_weight().asnumpy(), eff.asnumpy())
    # the gradient of sum(y * r) by finite differences on one stored weight
    r = mx.nd.array(np.random.RandomState(2).normal(0, 1, want.shape), dtype="float64")
    with autograd.record():
        loss = (conv(x) * r).sum()
    loss.backward()
    grad = conv.weight.grad()[1, 0, 1, 2].asscalar()
    h = 1e-6
    values = []
    for sign in (1, -1):
        shifted = w.copy()
        shifted[1, 0, 1, 2] += sign * h
        conv.weight.set_data(shifted)
        values.append((conv(x) * r).sum().asscalar())
    assert grad == pytest.approx((values[0] - values[1]) / (2 * h), rel=1e-6)


def test_stored_parameter_is_a_plain_conv_weight():
    conv = ReparamConv2D(8, 1, in_channels=4, mode="centered", prefix="pw1_")
    assert list(conv.collect_params()) == ["pw1_weight"]
    assert conv.weight.shape == (8, 4, 1, 1)
    with pytest.raises(ValueError, match="needs in_channels"):
        ReparamConv2D(8, 1, in_channels=0)
