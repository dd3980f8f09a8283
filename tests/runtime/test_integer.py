"""The integer-only reference (ssd_nobias/runtime/integer.py): exact integer convolutions, a
multiplier-and-shift requantization that rounds the exact product, the pair-saturating kernels
of CPUs without VNNI emulated to the definition, and on a real INT8 export each layer within
1 LSB of ONNX Runtime given the same input (the exact result where this CPU's kernels are
exact, the emulation where they are not), the same detections through the host part."""
import os
from fractions import Fraction

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.runtime.kernels import int8_kernels
from ssd_nobias.runtime.integer import IntegerAccelerator, conv_int, requant_params, requantize

pytest.importorskip("onnxruntime")


def test_the_multiplier_and_shift_hold_the_real_multiplier_to_31_bits():
    real = np.array([1e-9, 3.7e-5, 0.0023, 0.5, 0.999999999, 0.25])
    m, shift = requant_params(real)
    assert m.dtype == np.int32 and np.all((m >= 2 ** 30) & (m.astype(np.int64) < 2 ** 31))
    np.testing.assert_allclose(m / 2.0 ** shift.astype(np.float64), real, rtol=2 ** -31)
    assert (int(m[3]), int(shift[3])) == (2 ** 30, 31)  # 0.5 exactly


def test_requantization_rounds_the_exact_product_half_up_and_clamps():
    rng = np.random.RandomState(0)
    real = rng.uniform(1e-4, 1e-2, 8)
    m, shift = requant_params(real)
    acc = rng.randint(-2 ** 24, 2 ** 24, (2, 8, 3, 3)).astype(np.int64)
    acc[0, :, 0, :] = (2 ** shift[:, None].astype(np.int64) // m[:, None]) * 7  # near n + .5
    rounded = requantize(acc, m, shift, -2 ** 40, 2 ** 40)
    for idx in np.ndindex(acc.shape):
        c = idx[1]
        exact = Fraction(int(acc[idx]) * int(m[c]), 2 ** int(shift[c]))
        assert rounded[idx] == int(np.floor(exact + Fraction(1, 2)))
    np.testing.assert_array_equal(requantize(acc, m, shift, -128, 127),
                                  np.clip(rounded, -128, 127))
    np.testing.assert_array_equal(requantize(acc, m, shift, 0, 255), np.clip(rounded, 0, 255))


@pytest.mark.parametrize("shape, weight, stride, pad, group", [
    ((2, 3, 11, 9), (5, 3, 3, 3), 2, 1, 1),  # the first conv: full 3x3, strided
    ((1, 6, 8, 8), (6, 1, 3, 3), 1, 1, 6),  # depthwise
    ((1, 6, 7, 7), (6, 1, 3, 3), 2, 1, 6),  # depthwise, strided
    ((1, 8, 5, 5), (4, 8, 1, 1), 1, 0, 1),  # pointwise
])
def test_integer_convolution_equals_mxnets(shape, weight, stride, pad, group):
    rng = np.random.RandomState(1)
    x = rng.randint(0, 256, shape).astype(np.uint8)
    w = rng.randint(-128, 128, weight).astype(np.int8)
    got = conv_int(x, w, (stride, stride), (pad,) * 4, (1, 1), group)
    want = mx.nd.Convolution(mx.nd.array(x, dtype="float64"), mx.nd.array(w, dtype="float64"),
                             kernel=weight[2:], stride=(stride, stride), pad=(pad, pad),
                             num_filter=weight[0], num_group=group, no_bias=True)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want.asnumpy().astype(np.int64))


def pairs_by_definition(x, w, stride, pad, block):
    """vpmaddubsw's result written out: per output value, the products in (kernel tap, input
    channel padded to `block`) order, neighbours summed and clamped to int16, then added; an
    int8 input first shifted to uint8 (+128, the padding's zeros too) and corrected after."""
    signed = x.dtype == np.int8
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    if signed:
        xp += 128
    o, c, kh, kw = w.shape
    cp = c + (-c % block)
    n, _, hp, wp = xp.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    out = np.zeros((n, o, ho, wo), np.int64)
    for b, oc, y, x0 in np.ndindex(n, o, ho, wo):
        products = []
        for i in range(kh):
            for j in range(kw):
                for ch in range(cp):
                    if ch < c:
                        products.append(int(xp[b, ch, y * stride + i, x0 * stride + j]) *
                                        int(w[oc, ch, i, j]))
                    else:
                        products.append(0)
        products += [0] * (len(products) % 2)
        total = sum(min(32767, max(-32768, products[k] + products[k + 1]))
                    for k in range(0, len(products), 2))
        out[b, oc, y, x0] = total - (128 * int(w[oc].astype(np.int64).sum()) if signed else 0)
    return out


def test_saturating_pairs_give_int16_sums_where_exact_products_overflow():
    """255 * 127 twice is 64770: one saturated pair gives 32767. Which products are
    neighbours is the kernel's order: with block 1 a 3-channel tap's last channel pairs with
    the next tap's first; with block 4 it pairs with a zero."""
    x = np.full((1, 4, 1, 1), 255, np.uint8)
    w = np.full((1, 4, 1, 1), 127, np.int8)
    assert conv_int(x, w, (1, 1), (0,) * 4, (1, 1), 1)[0, 0, 0, 0] == 4 * 255 * 127
    assert conv_int(x, w, (1, 1), (0,) * 4, (1, 1), 1, channel_block=1)[0, 0, 0, 0] == 2 * 32767
    x3 = np.full((1, 3, 1, 2), 255, np.uint8)
    w3 = np.zeros((1, 3, 1, 2), np.int8)
    w3[0, 2, 0, 0] = w3[0, 0, 0, 1] = 127  # tap 0's channel 2 and tap 1's channel 0
    got = [conv_int(x3, w3, (1, 1), (0,) * 4, (1, 1), 1, channel_block=b)[0, 0, 0, 0]
           for b in (None, 1, 4)]
    assert got == [2 * 255 * 127, 32767, 2 * 255 * 127]
    signed = np.full((1, 2, 1, 1), 127, np.int8)  # +128: 255, then 255 * 127 * 2 saturates
    w2 = np.full((1, 2, 1, 1), 127, np.int8)
    assert conv_int(signed, w2, (1, 1), (0,) * 4, (1, 1), 1, channel_block=1)[0, 0, 0, 0] == \
        32767 - 128 * 254
    depthwise = np.full((1, 2, 3, 3), 255, np.uint8)
    wd = np.full((2, 1, 3, 3), 127, np.int8)  # never paired: widened to int32 first
    assert conv_int(depthwise, wd, (1, 1), (0,) * 4, (1, 1), 2, channel_block=4)[0, 0, 0, 0] \
        == 9 * 255 * 127


@pytest.mark.parametrize("dtype, shape, weight, stride, pad, block", [
    (np.uint8, (2, 6, 6, 5), (5, 6, 3, 3), 2, 1, 1),
    (np.uint8, (1, 3, 7, 7), (4, 3, 3, 3), 1, 1, 4),
    (np.int8, (1, 3, 7, 7), (4, 3, 3, 3), 2, 1, 1),  # the first conv, as each runtime runs it
    (np.int8, (1, 3, 7, 7), (4, 3, 3, 3), 2, 1, 4),
    (np.uint8, (1, 16, 4, 4), (8, 16, 1, 1), 1, 0, 4),
])
def test_the_emulation_equals_the_definition_on_random_inputs(dtype, shape, weight, stride, pad,
                                                              block):
    rng = np.random.RandomState(5)
    info = np.iinfo(dtype)
    x = rng.randint(info.min, info.max + 1, shape).astype(dtype)
    x[..., 0] = info.max  # large activations and weights, so that many pairs saturate
    w = rng.choice([-128, -127, 127, 120, 3, 0], weight).astype(np.int8)
    got = conv_int(x, w, (stride, stride), (pad,) * 4, (1, 1), 1, channel_block=block)
    want = pairs_by_definition(x, w, stride, pad, block)
    np.testing.assert_array_equal(got, want)
    assert np.any(got != conv_int(x, w, (stride, stride), (pad,) * 4, (1, 1), 1))


@pytest.fixture(scope="module")
def int8_export(split_export):
    cfg, params, folder, _ = split_export
    return cfg, params, os.path.join(folder, "accelerator")


def images(cfg, count):
    from ssd_nobias.data.datasets import build_dataset
    from ssd_nobias.data.transforms import ValTransform
    from ssd_nobias.data.preprocess import Preprocess

    dataset, transform = build_dataset(cfg, "val"), ValTransform(Preprocess.from_config(cfg))
    return np.stack([transform(*dataset[i % len(dataset)])[0].asnumpy() for i in range(count)])


@pytest.mark.slow
@pytest.mark.parametrize("graph", ["accelerator.int8.onnx", "accelerator.int8-signed.onnx"])
def test_each_layer_is_within_one_lsb_of_onnx_runtime_given_the_same_input(int8_export, graph):
    """Teacher-forced: each conv fed ONNX Runtime's own input tensor, so a difference is that
    layer's; ONNX Runtime requantizes in float32 and can land on the other side of a .5. Both
    variants: uint8 ReLU outputs, and signed int8 ones (Conv -> Relu -> Q, clamped to [0, 127]).
    On a CPU without VNNI the reference emulates ONNX Runtime's saturating pairs there."""
    from ssd_nobias.runtime.onnxrt import session

    cfg, _, folder = int8_export
    kernels = int8_kernels("onnxruntime")
    ref = IntegerAccelerator(os.path.join(folder, graph), kernels)
    relu_low = {c.out_range for c in ref.convs} - {(-128, 127)}
    assert relu_low == ({(0, 127)} if "signed" in graph else {(0, 255)})
    x = images(cfg, 4)
    names = [c.output for c in ref.convs]
    ort = dict(zip(names, session(ref.path, extra_outputs=names).run(names, {"data": x})))
    ort[ref.input_name] = ref.quantize_input(x)
    total = equal = 0
    for conv in ref.convs:
        ours = conv(ort[conv.source], kernels).astype(np.int64)
        diff = np.abs(ours - ort[conv.output].astype(np.int64))
        assert diff.max() <= 1, conv.name
        total, equal = total + diff.size, equal + int(np.sum(diff == 0))
    assert equal / total >= 0.999
    assert ref.requant_table()[0]["shift"][0] >= 31  # every multiplier below 1


@pytest.mark.slow
def test_eval_runs_the_integer_pair_by_name(int8_export, tmp_path):
    """`runtime='integer'` (eval's --runtime integer) puts the reference under the host part;
    it takes the INT8 graph only. (How far its heads drift from ONNX Runtime's end to end,
    where an early tie went the other way, is the network's: bench/integer_reference.py
    measures it on a trained model.)"""
    from ssd_nobias.errors import DataError
    from ssd_nobias.evaluation.evaluate import evaluate_checkpoint
    from ssd_nobias.runtime.predictors import SplitPredictor

    cfg, _, folder = int8_export
    pair = SplitPredictor(folder, int8=True, runtime="integer")
    x = images(cfg, 2)
    reference = IntegerAccelerator(os.path.join(folder, "accelerator.int8.onnx"))
    for got, want in zip(pair.accelerator(x), reference(x)):
        np.testing.assert_array_equal(got, want)
    result = evaluate_checkpoint(cfg, None, str(tmp_path), progress=False,
                                 accelerator_dir=folder, int8=True, runtime="integer")
    assert result.num_images == 4 and os.path.isfile(tmp_path / "eval.json")
    with pytest.raises(DataError, match="the integer runtime .the integer reference. runs the "
                                        "INT8 graph"):
        SplitPredictor(folder, runtime="integer")


def test_a_graph_that_is_not_int8_is_refused_by_name(int8_export):
    from ssd_nobias.errors import DataError

    _, _, folder = int8_export
    with pytest.raises(DataError, match=r"accelerator\.onnx: the input 'data' is not quantized"):
        IntegerAccelerator(os.path.join(folder, "accelerator.onnx"))


@pytest.mark.slow
def test_seven_bit_weights_make_the_saturating_kernels_exact(int8_export, tmp_path):
    """export --formats int8-cpu: the uint8 graph with weights in [-64, 64], so that no pair of
    products can overflow int16; the reference emulating either runtime's kernels then equals
    the exact result tensor for tensor, where on the 8-bit graph it does not."""
    from ssd_nobias.export.int8 import quantize
    from ssd_nobias.runtime.onnxrt import session

    cfg, _, folder = int8_export
    x = images(cfg, 2)
    path = str(tmp_path / "accelerator.int8-cpu.onnx")
    quantize(os.path.join(folder, "accelerator.onnx"), path, list(x), progress=False,
             seven_bit_weights=True)
    seven = {k: IntegerAccelerator(path, k) for k in ("exact", "onnxruntime", "openvino")}
    assert max(int(np.abs(c.weight).max()) for c in seven["exact"].convs) <= 64
    xq = seven["exact"].quantize_input(x)
    exact = seven["exact"].run_quantized(xq)
    for kind in ("onnxruntime", "openvino"):
        got = seven[kind].run_quantized(xq)
        assert all(np.array_equal(got[name], exact[name]) for name in exact), kind
    eight = {k: IntegerAccelerator(os.path.join(folder, "accelerator.int8.onnx"), k)
             for k in ("exact", "onnxruntime")}
    xq8 = eight["exact"].quantize_input(x)
    exact8, saturated8 = (eight[k].run_quantized(xq8) for k in ("exact", "onnxruntime"))
    assert any(not np.array_equal(exact8[n], saturated8[n]) for n in exact8)
    names = [c.output for c in seven["exact"].convs]  # and ONNX Runtime, on any CPU
    ort = dict(zip(names, session(path, extra_outputs=names).run(names, {"data": x})))
    ort[seven["exact"].input_name] = xq
    for conv in seven["exact"].convs:
        diff = np.abs(conv(ort[conv.source]).astype(np.int64) - ort[conv.output])
        assert diff.max() <= 1, conv.name
