"""The accelerator graph in INT8 with ONNX Runtime's static quantization: QDQ, per-channel
symmetric int8 weights, uint8 ReLU outputs with zero point 0, a symmetric int8 input,
calibrated on training images.

The 12 head outputs leave the accelerator either as the convolutions' int32 accumulators
(scaled: float in the file, no QuantizeLinear after the head convs; the default) or requantized
to symmetric int8. One tensor scale for all of a head's channels costs the class logits most:
on a study seed, int8 head outputs took val mAP from 0.734 to 0.438, int32 ones kept 0.732.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
from tqdm import tqdm

CALIB_METHODS = ("minmax", "entropy", "percentile")
HEAD_OUTPUTS = ("int32", "int8")


class _Reader:
    """ORT's CalibrationDataReader over a list of normalized (1, 3, H, W) images."""

    def __init__(self, images: Sequence[np.ndarray], progress: bool):
        self.images = list(images)
        self.bar = tqdm(total=len(self.images), desc="calibrate", unit="img", leave=False,
                        disable=not progress)
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


def quantize(float_path: str, int8_path: str, images: Sequence[np.ndarray],
             method: str = "minmax", progress: bool = True, heads: str = "int32") -> None:
    """Write `int8_path`, the float accelerator graph quantized with `images` (each (3, H, W),
    normalized) as calibration data; `heads`: the head outputs' type (HEAD_OUTPUTS)."""
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if method not in CALIB_METHODS:
        raise ValueError(f"calibration method '{method}' is not one of {CALIB_METHODS}")
    if heads not in HEAD_OUTPUTS:
        raise ValueError(f"head outputs '{heads}' are not one of {HEAD_OUTPUTS}")
    model = onnx.load(float_path)
    symmetric_int8 = [{"quant_type": QuantType.QInt8, "symmetric": True}]
    overrides = {model.graph.input[0].name: symmetric_int8}
    overrides.update({out.name: symmetric_int8 for out in model.graph.output})
    quantize_static(
        float_path, int8_path, _Reader(images, progress), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "Relu"], per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method={"minmax": CalibrationMethod.MinMax,
                          "entropy": CalibrationMethod.Entropy,
                          "percentile": CalibrationMethod.Percentile}[method],
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                       "TensorQuantOverrides": overrides})
    if heads == "int32":
        _accumulator_outputs(int8_path)


def _accumulator_outputs(path: str) -> None:
    """Drop the QuantizeLinear/DequantizeLinear pairs on the graph outputs: each head conv then
    returns its (scaled) int32 accumulator."""
    import onnx

    model = onnx.load(path)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    dropped = []
    for output in graph.output:
        dq = producer[output.name]
        q = producer[dq.input[0]]
        producer[q.input[0]].output[0] = output.name
        dropped += [id(dq), id(q)]
    kept = [node for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def layer_tensor(name: str) -> str:
    """The float graph's name of a layer output, from its name in the QDQ graph (a tensor the
    quantizer put a QuantizeLinear after is renamed <name>_QuantizeLinear_Input)."""
    suffix = "_QuantizeLinear_Input"
    return name[: -len(suffix)] if name.endswith(suffix) else name


def weight_scale_spread(int8_path: str) -> Dict[str, float]:
    """Per quantized Conv, by the layer output it makes (layer_tensor): max over median of
    its per-channel weight scales (a channel whose scale is far above the others' loses their
    precision in a per-tensor engine)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(int8_path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    spread = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        dq = producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        scale = inits[dq.input[1]].astype(np.float64)
        spread[layer_tensor(node.output[0])] = float(scale.max() / max(np.median(scale), 1e-30))
    return spread


def sqnr_db(reference: List[np.ndarray], test: List[np.ndarray]) -> float:
    """Signal-to-quantization-noise ratio of `test` against `reference`, in dB."""
    signal = sum(float(np.square(r.astype(np.float64)).sum()) for r in reference)
    noise = sum(float(np.square(r.astype(np.float64) - t).sum())
                for r, t in zip(reference, test))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)
