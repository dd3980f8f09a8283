"""ONNX Runtime sessions on the CPU, with a clear error for a missing or broken file."""
from __future__ import annotations

import os
from collections import Counter
from typing import Dict, Sequence

from ssd_nobias.errors import DataError, require
from ssd_nobias.onnx_files import load_onnx


def session(onnx_path: str, extra_outputs: Sequence[str] = (), threads: int = 0):
    """An ONNX Runtime CPU session; `extra_outputs` exposes inner tensors (for parity checks);
    `threads`: intra-op threads (0: ONNX Runtime's default)."""
    require("onnx", "onnxruntime", extra="onnx", what="running an ONNX model")
    import onnx
    import onnxruntime as ort

    model = load_onnx(onnx_path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    try:
        for name in extra_outputs:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
        return ort.InferenceSession(model.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as err:  # onnx and ORT raise their own types for a broken file
        raise DataError(f"cannot load ONNX model '{onnx_path}': {err}") from None


def optimized_ops(onnx_path: str) -> Dict[str, int]:
    """How many nodes of each op type ONNX Runtime's CPU provider runs for `onnx_path` after
    its graph optimizations (QDQ fusion into QLinearConv, layout changes): what two graphs
    that time differently actually execute."""
    import tempfile

    require("onnx", "onnxruntime", extra="onnx", what="reading ONNX Runtime's optimized graph")
    import onnx
    import onnxruntime as ort

    model = load_onnx(onnx_path)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        options.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), options,
                             providers=["CPUExecutionProvider"])
        return dict(Counter(n.op_type for n in onnx.load(options.optimized_model_filepath)
                            .graph.node))
