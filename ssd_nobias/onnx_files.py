"""ONNX files read safely: a model file from elsewhere reads nothing outside itself.

onnx.load follows an initializer's external-data location, and onnx 1.14 only strips a
leading '/' or '.' from it (CVE-2024-27318), so `sub/../../etc/passwd` is read. This project's
exports never use external data, so a file that does is refused, not followed.
"""
from __future__ import annotations

import os

from ssd_nobias.errors import DataError, require


def load_onnx(path: str, what: str = "ONNX model"):
    """The ModelProto in `path`, read without external data; a missing, broken or
    external-data file is a DataError naming it."""
    require("onnx", extra="onnx", what=f"reading an {what}")
    import onnx

    if not os.path.isfile(path):
        raise DataError(f"{what} '{path}' does not exist")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as err:  # onnx raises its own types for a broken file
        raise DataError(f"cannot load {what} '{path}': {err}") from None
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise DataError(
                f"{path}: tensor '{tensor.name}' keeps its values in an external file; "
                f"models with external data are not loaded (this project never writes them, "
                f"and their locations can point outside the model's folder)")
    return model


def _tensors(graph):
    """Every TensorProto a graph holds: initializers, Constant attributes, subgraphs'."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)
