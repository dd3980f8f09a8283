"""ONNX files run by OpenVINO's CPU runtime: the whole model or an accelerator graph (float32 or
INT8), with the same inputs and outputs as in ONNX Runtime.

The precision hint is f32: on CPUs with bfloat16 units (AMX) OpenVINO would otherwise run a
float32 model in bfloat16 and compare unlike with like. An INT8 (QDQ) graph runs OpenVINO's own
integer kernels whatever the hint.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Dict, Iterator, List, Sequence

import numpy as np

from ssd_nobias.errors import DataError, require
from ssd_nobias.onnx_files import load_onnx


class OpenVinoGraph:
    """A compiled ONNX model: {input name: array} in, its outputs in the file's order out, then
    `extra_outputs` (inner tensors exposed, as onnxrt.session does for parity checks)."""

    def __init__(self, onnx_path: str, threads: int = 0, extra_outputs: Sequence[str] = ()):
        require("openvino", extra="openvino", what="the OpenVINO runtime")
        import openvino as ov

        if not os.path.isfile(onnx_path):
            raise DataError(f"ONNX model '{onnx_path}' does not exist")
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            with _with_outputs(onnx_path, extra_outputs) as path:
                model = core.read_model(path)
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as err:  # OpenVINO's errors for a file it cannot read or compile
            raise DataError(f"OpenVINO cannot load '{onnx_path}': {err}") from None
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()

    def run(self, inputs: Dict[str, np.ndarray]) -> List[np.ndarray]:
        results = self.request.infer(inputs)
        return [np.asarray(results[o]) for o in self.compiled.outputs]


@contextlib.contextmanager
def _with_outputs(onnx_path: str, names: Sequence[str]) -> Iterator[str]:
    """`onnx_path` itself, or a temporary copy whose graph outputs also list `names`."""
    if not names:
        yield onnx_path
        return
    import onnx

    model = load_onnx(onnx_path)
    listed = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in listed)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "with_outputs.onnx")
        onnx.save(model, path)
        yield path


class OpenVinoAccelerator:
    """An accelerator graph in OpenVINO, as OnnxAccelerator: normalized NCHW float32 in, the
    12 head outputs (an INT8 graph's dequantized) out."""

    def __init__(self, onnx_path: str, threads: int = 0):
        self.graph = OpenVinoGraph(onnx_path, threads)
        self.outputs = self.graph.output_names

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        return self.graph.run({"data": np.asarray(x, np.float32)})


def run_layer(onnx_path: str, source: str, output: str, x: np.ndarray) -> np.ndarray:
    """The quantized tensor `output` of an INT8 graph as OpenVINO computes it from the quantized
    tensor `source` alone (the graph cut between the two): what OpenVINO does with one layer,
    given its input, without what its fusions across layers change."""
    import onnx.utils

    with tempfile.TemporaryDirectory() as tmp:
        cut = os.path.join(tmp, "layer.onnx")
        try:
            onnx.save(onnx.utils.Extractor(load_onnx(onnx_path)).extract_model([source],
                                                                                [output]), cut)
        except (ValueError, KeyError) as err:
            raise DataError(f"{onnx_path}: no layer from '{source}' to '{output}': {err}") \
                from None
        return OpenVinoGraph(cut).run({source: x})[0]
