"""The accelerator graph of a split export (export/accelerator.py writes it) run by ONNX
Runtime, and the names of the files in its folder."""
from __future__ import annotations

import os
from typing import List

import numpy as np

from ssd_nobias.runtime.onnxrt import session

ACCELERATOR_DIR = "accelerator"
NAME = "accelerator"
FLOAT_ONNX, INT8_ONNX = f"{NAME}.onnx", f"{NAME}.int8.onnx"
INT8_SIGNED_ONNX = f"{NAME}.int8-signed.onnx"  # signed int8 activations (TensorRT's form)
INT8_CPU_ONNX = f"{NAME}.int8-cpu.onnx"  # 7-bit weights: exact on CPUs without VNNI too
HOST_ONNX, HOST_INT8_ONNX = "host.onnx", "host.int8.onnx"


def is_int8_graph(accelerator: str, int8: bool) -> bool:
    """Whether --accelerator `accelerator` (a folder, or one graph of it) with --int8 `int8`
    names an INT8 graph: the folder's INT8 graph, or a graph file that is not the float one."""
    if accelerator.endswith(".onnx"):
        return os.path.basename(accelerator) != FLOAT_ONNX
    return int8


class OnnxAccelerator:
    """An accelerator graph in ONNX Runtime: normalized NCHW float32 in, the 12 head outputs
    (float32; an INT8 graph's dequantized) out."""

    def __init__(self, onnx_path: str, threads: int = 0):
        self.session = session(onnx_path, threads=threads)
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        return self.session.run(self.outputs, {"data": np.asarray(x, np.float32)})
