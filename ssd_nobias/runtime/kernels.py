"""Which INT8 kernels a runtime uses on this machine, found by running one convolution whose
two products, 255 * 127 each, overflow int16 when a kernel adds them as a saturating pair.

The CPU's flags predict it (machine.expected_int8_kernels), but a runtime may pick its kernels
by other rules (ONEDNN_MAX_CPU_ISA, an emulator, a build without some kernels): running the
probe is the truth, and costs a few milliseconds.
"""
from __future__ import annotations

import functools
import os
import tempfile
from typing import Optional

import numpy as np

from ssd_nobias.errors import require
from ssd_nobias.machine import CpuInfo, cpu_info
from ssd_nobias.runtime.onnxrt import session
from ssd_nobias.runtime.openvino import OpenVinoGraph
from ssd_nobias.runtime.runtimes import INTEGER_RUNTIMES

EXACT, SATURATED = 2 * 255 * 127, 32767  # the probe's accumulator either way


def _probe_model():
    """data (1, 2, 1, 1) float -> uint8 -> a 1x1 conv with weights 127 -> uint8 (step 256)."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value, dtype):
        return numpy_helper.from_array(np.array(value, dtype), name)

    nodes = [helper.make_node("QuantizeLinear", ["data", "s1", "zu"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s1", "zu"], ["x"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
             helper.make_node("Conv", ["x", "w"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "s256", "zu"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "s256", "zu"], ["out"])]
    inits = [const("s1", 1.0, np.float32), const("s256", 256.0, np.float32),
             const("zu", 0, np.uint8), const("wq", np.full((1, 2, 1, 1), 127), np.int8),
             const("ws", [1.0], np.float32), const("wz", [0], np.int8)]
    graph = helper.make_graph(
        nodes, "pair_probe", [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                            [1, 2, 1, 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _verdict(value: float, runtime: str) -> str:
    """The kernels a probe output (the accumulator rounded to a step of 256) shows."""
    if value == 256 * round(EXACT / 256):
        return "exact"
    if value == 256 * round(SATURATED / 256):
        return runtime
    raise RuntimeError(f"{runtime}'s INT8 probe gave {value}, neither the exact {EXACT} nor "
                       f"the saturated {SATURATED} (to a step of 256)")


@functools.lru_cache(maxsize=None)
def int8_kernels(runtime: str) -> str:
    """'exact' if `runtime` ('onnxruntime', 'openvino') computes uint8 x int8 dot products
    exactly in this process, else the runtime's name: the pair-saturating kernels
    IntegerAccelerator(kernels=...) emulates. The integer runtimes compute what their
    kernels say (runtimes.INTEGER_RUNTIMES)."""
    if runtime in INTEGER_RUNTIMES:
        return INTEGER_RUNTIMES[runtime]
    if runtime not in ("onnxruntime", "openvino"):
        raise ValueError(f"unknown runtime {runtime!r}")
    require("onnx", extra="onnx", what="probing a runtime's INT8 kernels")
    import onnx

    x = {"data": np.full((1, 2, 1, 1), 255, np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.onnx")
        onnx.save(_probe_model(), path)
        out = session(path).run(None, x) if runtime == "onnxruntime" else \
            OpenVinoGraph(path).run(x)
    return _verdict(float(out[0].ravel()[0]), runtime)


def int8_verdict(runtime: str, cpu: Optional[CpuInfo] = None) -> str:
    """One line for eval and detect with --int8: is `runtime` exact on this CPU, and if not,
    who the arbiter is."""
    cpu = cpu_info() if cpu is None else cpu
    if runtime in INTEGER_RUNTIMES:
        emulated = INTEGER_RUNTIMES[runtime]
        return "INT8: the integer reference, what a fixed-point accelerator computes" \
            if emulated == "exact" else \
            (f"INT8: the integer reference computing as {emulated} does on a CPU without VNNI "
             f"(saturating pairs), whatever this CPU is")
    if int8_kernels(runtime) == "exact":
        return f"INT8: {runtime} is exact on this CPU ({cpu.vector_width})"
    return (f"INT8: {runtime} is not exact on this CPU ({cpu.vector_width}: uint8 x int8 "
            f"pairs saturate at int16); --runtime integer gives what an integer accelerator "
            f"computes")
