"""The integer-only reference (ssd_nobias/runtime/integer.py): exact integer convolutions, a
multiplier-and-shift requantization that rounds the exact product, and on a real INT8 export
each layer within 1 LSB of ONNX Runtime given the same input, the same detections through the
host part."""
import os
from fractions import Fraction

import mxnet as mx
import numpy as np
import pytest

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
    variants: uint8 ReLU outputs, and signed int8 ones (Conv -> Relu -> Q, clamped to [0, 127])."""
    from ssd_nobias.runtime.onnxrt import session

    cfg, _, folder = int8_export
    ref = IntegerAccelerator(os.path.join(folder, graph))
    relu_low = {c.out_range for c in ref.convs} - {(-128, 127)}
    assert relu_low == ({(0, 127)} if "signed" in graph else {(0, 255)})
    x = images(cfg, 4)
    names = [c.output for c in ref.convs]
    ort = dict(zip(names, session(ref.path, extra_outputs=names).run(names, {"data": x})))
    ort[ref.input_name] = ref.quantize_input(x)
    total = equal = 0
    for conv in ref.convs:
        acc = conv_int(ort[conv.source], conv.weight, conv.strides, conv.pads, conv.dilations,
                       conv.group)
        ours = requantize(acc, conv.multiplier, conv.shift, *conv.out_range)
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
    with pytest.raises(DataError, match="the integer runtime runs the INT8 graph"):
        SplitPredictor(folder, runtime="integer")


def test_a_graph_that_is_not_int8_is_refused_by_name(int8_export):
    from ssd_nobias.errors import DataError

    _, _, folder = int8_export
    with pytest.raises(DataError, match=r"accelerator\.onnx: the input 'data' is not quantized"):
        IntegerAccelerator(os.path.join(folder, "accelerator.onnx"))
