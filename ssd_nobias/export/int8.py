"""The accelerator graph in INT8 with ONNX Runtime's static quantization: QDQ, per-channel
symmetric int8 weights, uint8 ReLU outputs with zero point 0, a symmetric int8 input,
calibrated on training images.

The 12 head outputs leave the accelerator as symmetric int8 tensors (the default) or as the
convolutions' int32 accumulators (scaled: float in the file, no QuantizeLinear after the head
convs; ONNX Runtime then runs the head convs in float). An int8 output has one scale for all
its channels, and a head's channels differ in range (class logits against box offsets, the
background logit against the rest): on a study seed that took val mAP from 0.734 to 0.438. So
before quantization each head conv's output channel c is multiplied by its own gain k_c =
1 / (c's calibrated max |y|), exact in float since the accelerator's convs have no bias, and
every channel fills the int8 range; the host multiplies channel c by 1 / k_c (HostPart's
channel scales) before adding the bias it already adds per channel. In the file each int8 head
output is followed by its DequantizeLinear (q * s_y, one scalar): ONNX Runtime fuses a head
conv into QLinearConv only then; an engine that returns q multiplies by s_y first.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from ssd_nobias.progress import progress_bar
from ssd_nobias.runtime.integer import layer_tensor
from ssd_nobias.onnx_files import load_onnx

CALIB_METHODS = ("minmax", "entropy", "percentile")
HEAD_OUTPUTS = ("int8", "int32")
ACTIVATIONS = ("uint8", "int8")  # the ReLU outputs' type; int8: TensorRT's signed Q/DQ


class _Reader:
    """ORT's CalibrationDataReader over a list of normalized (1, 3, H, W) images."""

    def __init__(self, images: Sequence[np.ndarray], progress: bool):
        self.images = list(images)
        self.bar = progress_bar(len(self.images), "calibrate", "img", enabled=progress)
        self.index = 0

    def get_next(self):
        if self.index == len(self.images):
            self.bar.close()
            return None
        self.index += 1
        self.bar.update()
        return {"data": np.asarray(self.images[self.index - 1], np.float32)[None]}

    def rewind(self):
        self.index = 0


def _calibration(method: str):
    """ORT's CalibrationMethod for a CALIB_METHODS name."""
    from onnxruntime.quantization import CalibrationMethod

    if method not in CALIB_METHODS:
        raise ValueError(f"calibration method '{method}' is not one of {CALIB_METHODS}")
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


@contextlib.contextmanager
def _quiet_root_logger():
    """ORT's quantizer warns, through the root logger, to run its pre-processing (shape
    inference): the accelerator graph's shapes are all known already."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize(float_path: str, int8_path: str, images: Sequence[np.ndarray],
             method: str = "minmax", progress: bool = True, heads: str = "int8",
             activations: str = "uint8", seven_bit_weights: bool = False
             ) -> Optional[List[np.ndarray]]:
    """Write `int8_path`, the float accelerator graph quantized with `images` (each (3, H, W),
    normalized) as calibration data; `heads`: the head outputs' type (HEAD_OUTPUTS);
    `activations`: the ReLU outputs' type (ACTIVATIONS: uint8, or int8 symmetric as TensorRT
    takes them, 7 bits of a non-negative range); `seven_bit_weights`: weights in [-64, 64]
    (ONNX Runtime's reduce_range), so that no pair of uint8 x int8 products overflows int16
    (255 * 64 * 2 < 32767) and CPUs without VNNI compute it exactly. Returns, for int8 heads,
    each output's per-channel scale 1 / k_c that undoes the equalization."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    calibration = _calibration(method)
    if heads not in HEAD_OUTPUTS:
        raise ValueError(f"head outputs '{heads}' are not one of {HEAD_OUTPUTS}")
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations '{activations}' are not one of {ACTIVATIONS}")
    signed = activations == "int8"
    gains = head_gains(float_path, images) if heads == "int8" else None
    model = load_onnx(float_path)
    symmetric_int8 = [{"quant_type": QuantType.QInt8, "symmetric": True}]
    overrides = {model.graph.input[0].name: symmetric_int8}
    overrides.update({out.name: symmetric_int8 for out in model.graph.output})
    with _equalized(float_path, int8_path, gains) as source, _quiet_root_logger():
        quantize_static(
            source, int8_path, _Reader(images, progress), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "Relu"], per_channel=True,
            reduce_range=seven_bit_weights,
            activation_type=QuantType.QInt8 if signed else QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=calibration,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": signed,
                           "TensorQuantOverrides": overrides})
    if signed:
        _relu_then_quantize(int8_path)
    if heads == "int32":
        _accumulator_outputs(int8_path)
        return None
    return channel_scales(gains)


def quantize_ordinary(float_path: str, int8_path: str, images: Sequence[np.ndarray],
                      method: str = "minmax", progress: bool = True,
                      equalize_heads: bool = False) -> Optional[List[np.ndarray]]:
    """Write `int8_path`: the float graph quantized as ONNX Runtime does by default (QDQ,
    per-channel symmetric int8 weights, asymmetric uint8 activations with their zero points,
    int32 biases), calibrated on `images` with `method`: the stock INT8 baseline, without any
    of this project's rules. `equalize_heads`: each head channel first scaled to its own range,
    as quantize() does (then its channel scales are returned), to tell what the heads'
    quantization costs from what the biases and zero points do."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    gains = head_gains(float_path, images) if equalize_heads else None
    with _equalized(float_path, int8_path, gains) as source, _quiet_root_logger():
        quantize_static(source, int8_path, _Reader(images, progress),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=_calibration(method))
    return channel_scales(gains) if gains else None


@contextlib.contextmanager
def _equalized(float_path: str, int8_path: str, gains: Optional[List[np.ndarray]]):
    """The graph to quantize: `float_path` itself, or with `gains` a temporary copy whose head
    convs' weight rows are multiplied by them (removed afterwards)."""
    import onnx

    if not gains:
        yield float_path
        return
    source = int8_path + ".equalized.tmp"
    model = load_onnx(float_path)
    _equalize(model, gains)
    onnx.save(model, source)
    try:
        yield source
    finally:
        if os.path.exists(source):
            os.remove(source)


def channel_scales(gains: List[np.ndarray]) -> List[np.ndarray]:
    """Per head output, the per-channel scales 1 / k_c that undo the equalization's gains."""
    return [(1 / gain.astype(np.float64)).astype(np.float32) for gain in gains]


def head_gains(float_path: str, images: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Per graph output, per channel: 1 / max |y_c| of the float graph over `images` (1 for a
    channel that never leaves 0)."""
    from ssd_nobias.runtime.onnxrt import session

    sess = session(float_path)
    peak = None
    for image in images:
        outs = sess.run(None, {"data": np.asarray(image, np.float32)[None]})
        now = [np.abs(o).max(axis=(0, 2, 3)).astype(np.float64) for o in outs]
        peak = now if peak is None else [np.maximum(a, b) for a, b in zip(peak, now)]
    return [np.where(p > 0, 1 / np.where(p > 0, p, 1), 1).astype(np.float32) for p in peak]


def _equalize(model, gains: List[np.ndarray]) -> None:
    """Multiply the weight rows of the conv behind each graph output by its channel gains."""
    from onnx import numpy_helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    inits = {init.name: init for init in graph.initializer}
    for output, gain in zip(graph.output, gains):
        conv = producer[output.name]
        init = inits[conv.input[1]]
        weight = numpy_helper.to_array(init) * gain.reshape(-1, 1, 1, 1)
        init.CopyFrom(numpy_helper.from_array(weight.astype(np.float32), init.name))


def _save_without(model, dropped: set, path: str) -> None:
    """Save `model` without the nodes whose id() is in `dropped` and the constants only they
    used, checked."""
    import onnx

    graph = model.graph
    kept = [node for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _relu_then_quantize(path: str) -> None:
    """Signed activations: ORT's quantizer keeps each ReLU between two Q/DQ pairs (a symmetric
    int8 range cannot hold only the ReLU's [0, max]); drop the pair before the ReLU, leaving
    Conv -> Relu -> QuantizeLinear, the form TensorRT fuses, with one rounding per layer."""
    model = load_onnx(path)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    users: Dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    dropped = set()
    for relu in (n for n in graph.node if n.op_type == "Relu"):
        dq = producer.get(relu.input[0])
        q = producer.get(dq.input[0]) if dq is not None else None
        if dq is None or q is None or dq.op_type != "DequantizeLinear" or \
                q.op_type != "QuantizeLinear" or users[dq.output[0]] != 1 or \
                users[q.output[0]] != 1:
            continue
        relu.input[0] = q.input[0]
        dropped |= {id(q), id(dq)}
    _save_without(model, dropped, path)


def _accumulator_outputs(path: str) -> None:
    """Drop the QuantizeLinear/DequantizeLinear pairs on the graph outputs: each head conv then
    returns its (scaled) int32 accumulator."""
    model = load_onnx(path)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    dropped = set()
    for output in graph.output:
        dq = producer[output.name]
        q = producer[dq.input[0]]
        producer[q.input[0]].output[0] = output.name
        dropped |= {id(dq), id(q)}
    _save_without(model, dropped, path)


def weight_scale_spread(int8_path: str) -> Dict[str, float]:
    """Per quantized Conv, by the layer output it makes (layer_tensor): max over median of
    its per-channel weight scales (a channel whose scale is far above the others' loses their
    precision in a per-tensor engine)."""
    from onnx import numpy_helper

    model = load_onnx(int8_path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    relu_after = {node.input[0]: node.output[0] for node in model.graph.node
                  if node.op_type == "Relu"}  # the signed variant keeps Conv -> Relu
    spread = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        dq = producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        scale = inits[dq.input[1]].astype(np.float64)
        output = relu_after.get(node.output[0], node.output[0])
        spread[layer_tensor(output)] = float(scale.max() / max(np.median(scale), 1e-30))
    return spread


def sqnr_db(reference: List[np.ndarray], test: List[np.ndarray]) -> float:
    """Signal-to-quantization-noise ratio of `test` against `reference`, in dB."""
    signal = sum(float(np.square(r.astype(np.float64)).sum()) for r in reference)
    noise = sum(float(np.square(r.astype(np.float64) - t).sum())
                for r, t in zip(reference, test))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)
