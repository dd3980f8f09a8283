"""The INT8 accelerator graph run as an integer-only engine would run it: the reference an NPU
vendor checks first, and the judge where two runtimes disagree.

Read from the saved QDQ file (export/int8.py writes it): every convolution takes int8 or uint8
activations and int8 per-channel weights, all with zero point 0, and accumulates in int32. Its
output channel c is requantized with M_c = s_in * s_w[c] / s_out, held as an int32 multiplier
m_c in [2^30, 2^31) and a right shift n_c (M_c ~ m_c / 2^n_c): y = (acc * m_c + 2^(n_c - 1)) >> n_c
in int64, round half up, then clamped to the output type: [0, 255] for a uint8 ReLU output (the
clamp is the ReLU), [0, 127] for the signed variant's int8 ReLU output (Conv -> Relu -> Q),
[-128, 127] for an int8 head output. Zero padding is exact because every zero
point is 0. No float is used between the quantized input and the int8 head outputs; the input's
quantization and the heads' dequantization (q * s) are the boundaries, as on a device.

CPUs without VNNI (AVX2, AVX-512 without VNNI) compute uint8 x int8 products with vpmaddubsw,
which adds adjacent pairs of products into int16 with saturation (255 * 127 * 2 > 32767), so
ONNX Runtime and OpenVINO there do not give the integer result. `kernels` emulates them
exactly as measured (docs/export-and-deploy.md, "INT8 on CPUs without VNNI"): the reduction
ordered (kernel tap, input channel) with neighbours paired, an int8 input shifted to uint8 by
+128 first and corrected after; which convolutions run that way is each runtime's choice
(IntConv.channel_block).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ssd_nobias.errors import DataError, require
from ssd_nobias.onnx_files import load_onnx

RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}
KERNELS = ("exact", "onnxruntime", "openvino")  # what IntegerAccelerator computes


def requant_params(multiplier: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(m, n) per channel for real multipliers in (0, 1): int32 m in [2^30, 2^31) and shift n
    with m / 2^n equal to the multiplier to 31 significant bits."""
    mantissa, exponent = np.frexp(np.asarray(multiplier, np.float64))  # M = q * 2^e, q in [.5, 1)
    m = np.round(mantissa * 2.0 ** 31).astype(np.int64)
    carry = m == 2 ** 31  # q rounded up to 1
    m = np.where(carry, 2 ** 30, m)
    shift = 31 - (exponent + carry).astype(np.int64)
    if np.any(multiplier <= 0) or np.any(shift < 1) or np.any(shift > 62):
        raise ValueError(f"requantization multipliers out of range: {multiplier.min():g} .. "
                         f"{multiplier.max():g}")
    return m.astype(np.int32), shift.astype(np.int32)


def requantize(acc: np.ndarray, m: np.ndarray, shift: np.ndarray, low: int, high: int
               ) -> np.ndarray:
    """int64 accumulators (N, C, H, W) to the output type, per channel: (acc * m + 2^(n-1)) >> n,
    clamped to [low, high]."""
    m = m.astype(np.int64).reshape(1, -1, 1, 1)
    shift = shift.astype(np.int64).reshape(1, -1, 1, 1)
    out = (acc * m + (np.int64(1) << (shift - 1))) >> shift
    return np.clip(out, low, high)


@dataclass(frozen=True)
class IntConv:
    """One quantized convolution and its requantization, as read from the file."""

    name: str  # the layer's output in the float graph
    source: str  # the quantized tensor it reads
    output: str  # the quantized tensor it writes
    weight: np.ndarray  # int8, (O, I / group, kh, kw)
    group: int
    strides: Tuple[int, int]
    pads: Tuple[int, int, int, int]  # top, left, bottom, right
    dilations: Tuple[int, int]
    multiplier: np.ndarray  # int32 m per output channel
    shift: np.ndarray  # int32 n per output channel
    real_multiplier: np.ndarray  # float64 s_in * s_w / s_out, for reports
    out_range: Tuple[int, int]
    out_dtype: np.dtype
    relu: bool  # Conv -> Relu -> QuantizeLinear (the signed variant's form)
    in_dtype: np.dtype

    def channel_block(self, kernels: str) -> Optional[int]:
        """How `kernels` (KERNELS) compute this convolution: None for exactly, else with
        vpmaddubsw's saturating pairs over input channels padded to a multiple of the block
        returned. As measured (see the module's docstring): depthwise ones exactly (widened
        to int32 first); ONNX Runtime (1.18, block 1) where it fuses DequantizeLinear -> Conv ->
        QuantizeLinear into one integer kernel, which it does for a uint8 output with no Relu
        between (int8 heads and the signed variant run in float); OpenVINO (2026.4, oneDNN,
        block 4) all others but an int8 -> int8 conv without Relu (the signed heads)."""
        if kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, not {kernels!r}")
        if kernels == "exact" or self.group != 1:
            return None
        if kernels == "onnxruntime":
            return 1 if self.out_dtype == np.dtype(np.uint8) and not self.relu else None
        signed_heads = self.in_dtype == self.out_dtype == np.dtype(np.int8) and not self.relu
        return None if signed_heads else 4

    def __call__(self, x: np.ndarray, kernels: str = "exact") -> np.ndarray:
        """This layer's quantized output for its quantized input `x`, as `kernels` give it."""
        acc = conv_int(x, self.weight, self.strides, self.pads, self.dilations, self.group,
                       self.channel_block(kernels))
        return requantize(acc, self.multiplier, self.shift, *self.out_range) \
            .astype(self.out_dtype)


def conv_int(x: np.ndarray, w: np.ndarray, strides, pads, dilations, group: int,
             channel_block: Optional[int] = None) -> np.ndarray:
    """An integer convolution: int x (N, C, H, W), int8 w -> int64 accumulators; with a
    `channel_block`, as vpmaddubsw computes it, each tap's input channels padded with zeros
    to a multiple of it (see the module's docstring)."""
    n, c, h, wd = x.shape
    o, per_group, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1

    def tap(i, j):
        return xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]

    w64 = w.astype(np.int64)
    if group == c == o and per_group == 1:  # depthwise: one multiply-add per tap
        acc = np.zeros((n, o, ho, wo), np.int64)
        for i in range(kh):
            for j in range(kw):
                acc += tap(i, j) * w64[:, 0, i, j].reshape(1, o, 1, 1)
        return acc
    if group != 1:
        raise DataError(f"grouped convolution with {group} groups is not supported")
    if channel_block:
        signed = x.dtype == np.int8
        if signed:
            xp += 128  # the kernels take uint8: int8 + 128, the padding's 0 included
        extra = -c % channel_block
        cols = np.stack([tap(i, j) for i in range(kh) for j in range(kw)], axis=1)  # N,T,C,..
        cols = np.pad(cols, ((0, 0), (0, 0), (0, extra), (0, 0), (0, 0)))
        taps = w64.transpose(0, 2, 3, 1)  # O, kh, kw, C
        taps = np.pad(taps, ((0, 0), (0, 0), (0, 0), (0, extra)))
        acc = _saturated_pairs(cols.reshape(n, -1, ho * wo), taps.reshape(o, -1))
        if signed:
            acc -= 128 * w64.reshape(o, -1).sum(1).reshape(1, o, 1)
        return acc.reshape(n, o, ho, wo)
    cols = np.stack([tap(i, j) for i in range(kh) for j in range(kw)], axis=2)  # N,C,K,Ho,Wo
    cols = cols.reshape(n, c * kh * kw, ho * wo)
    acc = np.matmul(w64.reshape(o, c * kh * kw), cols)  # weights laid out (C, kh, kw)
    return acc.reshape(n, o, ho, wo)


def _saturated_pairs(cols: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum over p of clamp(w[:, 2p] x[2p] + w[:, 2p+1] x[2p+1], int16): cols (N, K, M) of
    uint8 values, w (O, K) int8 -> (N, O, M) int64. Each pair sum is below 2^17, exact in
    float32, so BLAS computes it; the clamped sums are added in int64."""
    n, k, m = cols.shape
    o = w.shape[0]
    if k % 2:  # an odd reduction ends with a product paired with 0: it cannot saturate
        cols = np.concatenate([cols, np.zeros((n, 1, m), cols.dtype)], axis=1)
        w = np.concatenate([w, np.zeros((o, 1), w.dtype)], axis=1)
    pairs = (k + 1) // 2
    a = cols.reshape(n, pairs, 2, m).astype(np.float32)
    b = w.reshape(o, pairs, 2).transpose(1, 0, 2).astype(np.float32)  # (P, O, 2)
    step = max(1, (16 << 20) // (o * m))  # about 64 MB of float32 pair sums at a time
    acc = np.zeros((n, o, m), np.int64)
    for i in range(n):
        for p in range(0, pairs, step):
            sums = np.matmul(b[p:p + step], a[i, p:p + step])  # (step, O, M)
            acc[i] += np.clip(sums, -32768, 32767).astype(np.int64).sum(0)
    return acc


class IntegerAccelerator:
    """The INT8 accelerator graph in integer arithmetic: normalized float NCHW in, the 12 head
    outputs dequantized (q * s) out, like OnnxAccelerator; run_quantized gives every layer's
    quantized output and the largest accumulator seen."""

    def __init__(self, onnx_path: str, kernels: str = "exact"):
        require("onnx", extra="onnx", what="reading the INT8 accelerator graph")
        if kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, not {kernels!r}")
        self.path, self.kernels = onnx_path, kernels
        self.input_scale, self.input_name, self.convs, self.heads = _read(onnx_path)
        self.outputs = [name for name, _, _ in self.heads]
        self.max_accumulator = 0

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """The boundary: float input to int8, as QuantizeLinear does (half to even, saturate)."""
        return np.clip(np.rint(np.asarray(x, np.float32) / self.input_scale), -128, 127) \
            .astype(np.int8)

    def run_quantized(self, xq: np.ndarray) -> Dict[str, np.ndarray]:
        """Every quantized tensor (by its name in the file) for an int8 input batch."""
        tensors = {self.input_name: xq}
        for conv in self.convs:
            acc = conv_int(tensors[conv.source], conv.weight, conv.strides, conv.pads,
                           conv.dilations, conv.group, conv.channel_block(self.kernels))
            self.max_accumulator = max(self.max_accumulator, int(np.abs(acc).max()))
            if self.max_accumulator >= 2 ** 31:
                raise ValueError(f"{conv.name}: accumulator {self.max_accumulator} exceeds int32")
            tensors[conv.output] = requantize(acc, conv.multiplier, conv.shift,
                                              *conv.out_range).astype(conv.out_dtype)
        return tensors

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        tensors = self.run_quantized(self.quantize_input(x))
        return [(tensors[q].astype(np.float32) * scale).astype(np.float32)
                for _, q, scale in self.heads]

    def requant_table(self) -> List[dict]:
        """Per convolution: its multipliers' real range, int32 multipliers and shifts."""
        return [{"layer": c.name, "output": str(c.out_dtype),
                 "multiplier_real": [float(c.real_multiplier.min()),
                                     float(c.real_multiplier.max())],
                 "multiplier_int32": [int(c.multiplier.min()), int(c.multiplier.max())],
                 "shift": [int(c.shift.min()), int(c.shift.max())]} for c in self.convs]


def _read(path: str):
    """(input scale, input's quantized tensor, convolutions in order, heads as (graph output,
    quantized tensor, scale)) from a QDQ file whose rules proof.py checks."""
    import onnx
    from onnx import numpy_helper

    model = load_onnx(path)
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: Dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def zero(node) -> None:
        if len(node.input) > 2 and np.any(inits[node.input[2]] != 0):
            raise DataError(f"{path}: {node.name or node.op_type} has a zero point that is "
                            f"not 0; the integer reference needs symmetric quantization")

    def scale_of(node) -> np.ndarray:
        zero(node)
        return inits[node.input[1]].astype(np.float64)

    data = graph.input[0].name
    entry = [n for n in consumers.get(data, []) if n.op_type == "QuantizeLinear"]
    if len(entry) != 1:
        raise DataError(f"{path}: the input '{data}' is not quantized by one QuantizeLinear: "
                        f"not an INT8 accelerator graph")
    scales = {entry[0].output[0]: float(scale_of(entry[0]))}
    dtypes = {entry[0].output[0]: np.dtype(np.int8)}  # the input's, made symmetric by export
    convs = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
        after = consumers.get(node.output[0], [])
        relu = len(after) == 1 and after[0].op_type == "Relu"  # the signed variant's form
        if relu:
            after = consumers.get(after[0].output[0], [])
        if len(node.input) > 2 or not x_dq or not w_dq or x_dq.op_type != "DequantizeLinear" \
                or w_dq.op_type != "DequantizeLinear" or len(after) != 1 \
                or after[0].op_type != "QuantizeLinear":
            raise DataError(f"{path}: Conv {node.name} is not DequantizeLinear -> Conv (no "
                            f"bias) [-> Relu] -> QuantizeLinear: not an INT8 accelerator graph")
        source, q = x_dq.input[0], after[0]
        s_in, s_w, s_out = float(scale_of(x_dq)), scale_of(w_dq), float(scale_of(q))
        real = s_in * s_w / s_out
        m, shift = requant_params(real)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        # QuantizeLinear's type is its zero point's, uint8 without one
        out_dtype = inits[q.input[2]].dtype if len(q.input) > 2 else np.dtype(np.uint8)
        low, high = RANGES[out_dtype]
        convs.append(IntConv(
            layer_tensor(q.input[0]), source, q.output[0], inits[w_dq.input[0]],
            int(attrs.get("group", 1)), tuple(attrs.get("strides", (1, 1))),
            tuple(attrs.get("pads", (0, 0, 0, 0))), tuple(attrs.get("dilations", (1, 1))),
            m, shift, real, (max(low, 0) if relu else low, high), out_dtype, relu,
            dtypes[source]))
        scales[q.output[0]] = s_out
        dtypes[q.output[0]] = out_dtype
    heads = []
    for output in graph.output:
        dq = producer.get(output.name)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in scales:
            raise DataError(f"{path}: output '{output.name}' is not the DequantizeLinear of a "
                            f"quantized conv output (int32 heads have no integer reference)")
        heads.append((output.name, dq.input[0], np.float32(scale_of(dq))))
    return scales[entry[0].output[0]], entry[0].output[0], convs, heads


def format_requant(table: Sequence[dict], per_layer: bool = True) -> str:
    """The requantization an integer engine applies: a summary line, then one row per conv."""
    shifts = [s for row in table for s in row["shift"]]
    rows = [f"requantization: {len(table)} convs, per output channel an int32 multiplier in "
            f"[2^30, 2^31) and a right shift of {min(shifts)}..{max(shifts)} bits"]
    if per_layer:
        rows += [f"  {r['layer']:60s} {r['output']:5s} M {r['multiplier_real'][0]:.3e}.."
                 f"{r['multiplier_real'][1]:.3e}  m {r['multiplier_int32'][0]}.."
                 f"{r['multiplier_int32'][1]}  shift {r['shift'][0]}..{r['shift'][1]}"
                 for r in table]
    return "\n".join(rows)


def layer_tensor(name: str) -> str:
    """The float graph's name of a layer output, from its name in the QDQ graph (a tensor the
    quantizer put a QuantizeLinear after is renamed <name>_QuantizeLinear_Input)."""
    suffix = "_QuantizeLinear_Input"
    return name[: -len(suffix)] if name.endswith(suffix) else name


def lsb_differences(reference: Dict[str, np.ndarray], other: Dict[str, np.ndarray],
                    names: Sequence[str]) -> Dict[str, Dict[str, int]]:
    """Per quantized tensor: how many values differ from the reference by 0, 1 and more LSB."""
    counts = {}
    for name in names:
        diff = np.abs(reference[name].astype(np.int32) - other[name].astype(np.int32))
        counts[name] = {"values": int(diff.size), "equal": int(np.sum(diff == 0)),
                        "one_lsb": int(np.sum(diff == 1)), "more": int(np.sum(diff > 1)),
                        "max_lsb": int(diff.max())}
    return counts
