"""What an accelerator graph holds, proven from the saved ONNX file itself.

Float32: only the allowed operators; every Conv with a weight and no bias input; no constant
other than those weights. INT8 (QDQ): additionally every Conv quantized (its input and weight
come from DequantizeLinear, the weight int8 and per-channel; a head conv's output either
quantized to int8, the graph's output, or left as its int32 accumulator), and every zero point
exactly 0:
an integer convolution whose input has zero point zp adds zp * sum(w) per channel, a bias in
disguise. A graph that breaks a rule gets a problem naming the node.

An INT8 graph is also checked against the Q/DQ rules TensorRT's explicit quantization imposes
(its ONNX parser refuses or falls back otherwise): every quantized tensor int8 (no uint8) with
zero point 0, activations quantized per tensor, weights per output channel (axis 0) within
[-127, 127], every scale positive and finite. What breaks them is listed in `tensorrt`, not
in `problems`: the uint8 variant is a valid bias-free graph that TensorRT does not take.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

from ssd_nobias.onnx_files import load_onnx

LAYOUT_OPS = ("Transpose", "Reshape", "Flatten", "Concat")
FLOAT_OPS = ("Conv", "Relu") + LAYOUT_OPS
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class Proof:
    """The walk's findings: operator counts, what was checked, and every problem found."""

    path: str
    int8: bool
    ops: Dict[str, int] = field(default_factory=dict)
    convs: int = 0
    quantized_convs: int = 0
    zero_points: int = 0  # zero-point tensors checked (all must be exactly 0)
    types: Dict[str, int] = field(default_factory=dict)  # quantized activations by int type
    problems: List[str] = field(default_factory=list)
    tensorrt: List[str] = field(default_factory=list)  # why TensorRT would not take it

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def signed(self) -> bool:
        """Every quantized tensor signed int8 with zero point 0."""
        return self.int8 and set(self.types) == {"int8"}

    @property
    def tensorrt_form(self) -> bool:
        """An INT8 graph within TensorRT's Q/DQ rules (see the module's docstring)."""
        return self.int8 and self.ok and not self.tensorrt

    def summary(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items()))
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        line = f"{self.path}: {verdict}; {self.convs} Conv without bias; operators: {ops}"
        if self.int8:
            types = ", ".join(f"{k} {v}" for k, v in sorted(self.types.items()))
            line += (f"; {self.quantized_convs} of {self.convs} Conv quantized; "
                     f"{self.zero_points} zero points, all 0; quantized tensors: {types}")
            if self.tensorrt_form:
                line += " (all signed: TensorRT's Q/DQ form)"
            elif self.tensorrt:
                line += (f"; not TensorRT's Q/DQ form ({len(self.tensorrt)} reason(s), first: "
                         f"{self.tensorrt[0]})")
        return line


def prove(path: str) -> Proof:
    """Walk an accelerator ONNX file; INT8 rules apply when it holds QuantizeLinear nodes."""
    from onnx import numpy_helper

    model = load_onnx(path)
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    int8 = any(n.op_type == "QuantizeLinear" for n in graph.node)
    proof = Proof(path, int8)
    allowed = FLOAT_OPS + (QDQ_OPS if int8 else ())
    for node in graph.node:
        proof.ops[node.op_type] = proof.ops.get(node.op_type, 0) + 1
        name = node.name or node.output[0]
        if node.op_type not in allowed:
            proof.problems.append(f"node {name}: {node.op_type} is not allowed (allowed: "
                                  f"{', '.join(allowed)})")
            continue
        for k, tensor in enumerate(node.input):
            if tensor in inits and not _constant_allowed(node, k, int8):
                proof.problems.append(f"node {name}: input {k} '{tensor}' is a constant "
                                      f"({node.op_type} may only take weights as constants)")
        if node.op_type == "Conv":
            _check_conv(node, name, inits, producer, proof)
        elif node.op_type in QDQ_OPS:
            _check_zero_point(node, name, inits, proof)
    if int8:
        _check_activation_types(graph, producer, inits, proof)
        _check_tensorrt_rules(graph, inits, proof)
    return proof


def _constant_allowed(node, index: int, int8: bool) -> bool:
    if node.op_type == "Conv":
        return index == 1 and not int8  # INT8: the weight comes through DequantizeLinear
    if node.op_type in QDQ_OPS:
        return True  # weights, scales and zero points
    return node.op_type == "Reshape" and index == 1  # the target shape


def _check_conv(node, name: str, inits, producer, proof: Proof) -> None:
    if len(node.input) > 2 and node.input[2]:
        proof.problems.append(f"node {name}: Conv has a bias input '{node.input[2]}'")
    else:
        proof.convs += 1  # a Conv without bias
    if not proof.int8:
        if node.input[1] not in inits:
            proof.problems.append(f"node {name}: Conv weight '{node.input[1]}' is no constant")
        return
    data, weight = (producer.get(t) for t in node.input[:2])
    if data is None or data.op_type != "DequantizeLinear":
        proof.problems.append(f"node {name}: Conv input is not quantized (no "
                              f"DequantizeLinear before it)")
        return
    if weight is None or weight.op_type != "DequantizeLinear" or weight.input[0] not in inits:
        proof.problems.append(f"node {name}: Conv weight is not a quantized constant")
        return
    q = inits[weight.input[0]]
    scale = inits.get(weight.input[1])
    if q.dtype != np.int8:
        proof.problems.append(f"node {name}: weight is {q.dtype}, not int8")
    elif scale is None or scale.size != q.shape[0]:
        proof.problems.append(f"node {name}: weight scale is not per output channel")
    else:
        proof.quantized_convs += 1


def _check_zero_point(node, name: str, inits, proof: Proof) -> None:
    if len(node.input) < 3 or not node.input[2]:
        proof.zero_points += 1  # absent: 0 by the standard
        return
    zp = inits.get(node.input[2])
    if zp is None:
        proof.problems.append(f"node {name}: zero point '{node.input[2]}' is no constant")
    elif np.any(zp != 0):
        proof.problems.append(f"node {name}: zero point {zp.reshape(-1)[:4].tolist()} is not 0: "
                              f"an integer conv adds zp * sum(w), a bias")
    else:
        proof.zero_points += 1


def _check_activation_types(graph, producer, inits, proof: Proof) -> None:
    """The input int8 and ReLU outputs uint8 (zero point 0); each head output either an int8
    symmetric tensor (a QuantizeLinear's output, or its DequantizeLinear's) or its conv's
    int32 accumulator (a quantized Conv's output, scaled)."""
    heads = set()
    for out in graph.output:
        node = producer.get(out.name)
        if node is not None and node.op_type == "Conv":
            proof.types["int32 head"] = proof.types.get("int32 head", 0) + 1
            continue
        q = node
        if node is not None and node.op_type == "DequantizeLinear":
            q = producer.get(node.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            proof.problems.append(f"output '{out.name}' is neither quantized nor a conv's "
                                  f"accumulator")
        else:
            heads.add(q.name)
    for node in graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        kind = "uint8" if zp is None else str(zp.dtype)
        proof.types[kind] = proof.types.get(kind, 0) + 1
        if node.input[0] == graph.input[0].name and kind != "int8":
            proof.problems.append(f"node {node.name}: the input is quantized as {kind}, not "
                                  f"symmetric int8")
        if node.name in heads and kind != "int8":
            proof.problems.append(f"node {node.name}: a head output quantized as {kind}, not "
                                  f"symmetric int8")


def _check_tensorrt_rules(graph, inits, proof: Proof) -> None:
    """TensorRT's explicit-quantization rules, each break named by node, into proof.tensorrt."""
    import onnx

    for node in graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        name = node.name or node.output[0]
        scale = inits.get(node.input[1])
        zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None or zp.dtype != np.int8:
            proof.tensorrt.append(f"{name}: {'uint8' if zp is None else zp.dtype} "
                                  f"(TensorRT quantizes to int8 only)")
        if scale is None:
            continue  # a scale that is no constant is already a problem of its own
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            proof.tensorrt.append(f"{name}: a scale that is not positive and finite")
        weight = node.op_type == "DequantizeLinear" and node.input[0] in inits
        if not weight:
            if scale.size != 1:
                proof.tensorrt.append(f"{name}: an activation quantized per channel "
                                      f"(TensorRT takes one scale per activation tensor)")
            continue
        q = inits[node.input[0]]
        axis = next((onnx.helper.get_attribute_value(a) for a in node.attribute
                     if a.name == "axis"), 1)
        if scale.size != 1 and axis != 0:
            proof.tensorrt.append(f"{name}: weight scales along axis {axis}, not 0 (the "
                                  f"output channels)")
        if q.size and int(q.min()) < -127:
            proof.tensorrt.append(f"{name}: a weight of -128 (TensorRT's int8 weights are "
                                  f"in [-127, 127])")
