"""Audit any MXNet params file for biases: per convolution, its own bias, its BatchNorm's mean and
beta, and the bias it would have once the BatchNorm is folded into it.

Works on Gluon params (`features.0.weight`, `ssd0_conv0_weight`) and on exported ones
(`arg:...`, `aux:...`). Convolutions are paired with the BatchNorm that follows them from the
graph when a symbol file is given, else by file order and channel count.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import mxnet as mx
import numpy as np

from ssd_nobias.errors import DataError, mxnet_reason

_SUFFIXES = ("running_mean", "running_var", "weight", "bias", "gamma", "beta")
BN_EPS = 1e-5  # Gluon's default, used when no symbol gives the layer's own


@dataclass(frozen=True)
class ConvAudit:
    """One convolution as a deploy runtime would see it once its BatchNorm is folded."""

    conv: str
    bias: Optional[float]  # max |conv bias|, None when the conv has no bias array
    norm: Optional[str]
    mean: Optional[float]  # max |running_mean|
    beta: Optional[float]  # max |beta|, None when the norm has none
    folded: float  # max |bias after folding|, exactly 0.0 when there is none

    @property
    def bias_free(self) -> bool:
        """No bias array (even of zeros: a runtime would still add it) and none from folding."""
        return self.bias is None and self.folded == 0.0


def _split(key: str):
    name = key[4:] if key.startswith(("arg:", "aux:")) else key
    for suffix in _SUFFIXES:
        for sep in (".", "_"):
            if name.endswith(sep + suffix):
                return name[: -len(suffix) - 1], suffix
    return name, None


def load_layers(params_path: str) -> Dict[str, Dict[str, np.ndarray]]:
    """{layer: {'weight': ..., 'gamma': ...}} in file order."""
    try:
        arrays = mx.nd.load(params_path)
    except mx.base.MXNetError as err:
        raise DataError(f"cannot read '{params_path}': {mxnet_reason(err)}") from None
    if not isinstance(arrays, dict):
        raise DataError(f"'{params_path}' holds unnamed arrays, not a params file")
    layers: Dict[str, Dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        layer, suffix = _split(key)
        if suffix:
            layers.setdefault(layer, {})[suffix] = value.asnumpy().astype(np.float64)
    return layers


def _pairs_from_symbol(symbol_path: str) -> Dict[str, tuple]:
    """{conv layer: (norm layer, eps)} for each BatchNorm fed directly by a Convolution."""
    try:
        with open(symbol_path) as f:
            nodes = json.load(f)["nodes"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"cannot read symbol '{symbol_path}': {err}") from None
    pairs = {}
    for node in nodes:
        if node["op"] != "BatchNorm":
            continue
        source = nodes[node["inputs"][0][0]]
        if source["op"] != "Convolution":
            continue
        conv = _split(nodes[source["inputs"][1][0]]["name"])[0]
        norm = _split(nodes[node["inputs"][1][0]]["name"])[0]
        pairs[conv] = (norm, float(node.get("attrs", {}).get("eps", BN_EPS)))
    return pairs


def _pairs_by_order(layers: Dict[str, Dict[str, np.ndarray]]) -> Dict[str, tuple]:
    """Each BatchNorm paired with the closest earlier conv of as many output channels."""
    pairs, last_conv = {}, None
    for name, arrays in layers.items():
        weight = arrays.get("weight")
        if weight is not None and weight.ndim == 4:
            last_conv = name
        elif "running_var" in arrays and last_conv is not None and last_conv not in pairs \
                and layers[last_conv]["weight"].shape[0] == arrays["running_var"].shape[0]:
            pairs[last_conv] = (name, BN_EPS)
    return pairs


def audit(params_path: str, symbol_path: Optional[str] = None) -> List[ConvAudit]:
    """Every convolution of a params file with its bias before and after BatchNorm folding."""
    layers = load_layers(params_path)
    pairs = _pairs_from_symbol(symbol_path) if symbol_path else _pairs_by_order(layers)
    out = []
    for name, arrays in layers.items():
        weight = arrays.get("weight")
        if weight is None or weight.ndim != 4:
            continue
        bias = arrays.get("bias")
        folded = np.zeros(weight.shape[0]) if bias is None else bias
        norm, mean, beta = None, None, None
        if name in pairs and pairs[name][0] in layers:
            norm, eps = pairs[name]
            bn = layers[norm]
            mean_arr = bn.get("running_mean", np.zeros_like(bn["running_var"]))
            gamma = bn.get("gamma", np.ones_like(mean_arr))
            beta_arr = bn.get("beta")
            folded = (folded - mean_arr) * gamma / np.sqrt(bn["running_var"] + eps)
            if beta_arr is not None:
                folded = folded + beta_arr
                beta = float(np.abs(beta_arr).max())
            mean = float(np.abs(mean_arr).max())
        out.append(ConvAudit(name, None if bias is None else float(np.abs(bias).max()), norm,
                             mean, beta, float(np.abs(folded).max())))
    if not out:
        raise DataError(f"'{params_path}' has no convolution weights")
    return out


def expected(report: Sequence[ConvAudit], patterns: Sequence[str]) -> List[ConvAudit]:
    """The convolutions the patterns ask to be bias-free (default: every conv+BN pair)."""
    if not patterns:
        return [r for r in report if r.norm is not None]
    return [r for r in report if any(fnmatch.fnmatchcase(r.conv, p) for p in patterns)]


def format_audit(report: Sequence[ConvAudit], asked: Sequence[ConvAudit]) -> str:
    """The audit as a table and a one-line verdict."""
    def num(v):
        return "-" if v is None else f"{v:.3g}"
    width = max(len(r.conv) for r in report)
    rows = [f"{'convolution':{width}s} {'bias':>8s} {'|mean|':>8s} {'|beta|':>8s} "
            f"{'folded':>8s}  norm"]
    for r in report:
        rows.append(f"{r.conv:{width}s} {num(r.bias):>8s} {num(r.mean):>8s} {num(r.beta):>8s} "
                    f"{num(r.folded):>8s}  {r.norm or '-'}")
    failing = [r.conv for r in asked if not r.bias_free]
    rows.append(f"{sum(r.bias_free for r in report)} of {len(report)} convolutions are "
                f"bias-free once folded; {len(asked) - len(failing)} of {len(asked)} asked for "
                f"are" + (f"; not: {', '.join(failing[:8])}{' ...' if len(failing) > 8 else ''}"
                          if failing else ""))
    return "\n".join(rows)
