"""The naive fix, measured: a stock-BatchNorm checkpoint made bias-free by dropping the shifts
its norm layers learned (beta, running mean), then exported as any bias-free checkpoint is.
The studies' arms (c), (g) and (h); the package's export refuses such params (ShiftError).
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import mxnet as mx

from ssd_nobias.atomic import write_json
from ssd_nobias.evaluation.evaluate import evaluate_checkpoint
from ssd_nobias.export.deploy import export_deploy, norm_shifts
from ssd_nobias.model.ssd import STOCK_RECIPE


def as_trained(cfg, norm: str):
    """cfg with model.norm `norm` and its 'auto' recipe keys set to what stock BatchNorm units
    get: the plain convs and ReLU a stock checkpoint was trained with."""
    out = cfg.clone()
    out.defrost()
    for key, value in STOCK_RECIPE.items():
        if out.model[key] == "auto":
            out.model[key] = value
    out.model.norm = norm
    if norm == "batchnorm":
        out.model.bias_free = ["*"]
    out.freeze()
    return out


def drop_shifts(cfg, params_path: str, out_path: str) -> Tuple[object, str, Dict[str, float]]:
    """Write `params_path` with every norm's beta removed and running mean zeroed to `out_path`.

    Returns the config that loads it (cfg's model with NoBiasBatchNorm and the stock model's
    plain convs and activation: the naive fix changes nothing else), the file written, and the
    shift each layer had (max |beta - gamma * mean / sqrt(var + eps)|, norm_shifts' measure)."""
    shifts = {layer: shift for layer, shift in norm_shifts(params_path).items() if shift > 0}
    arrays = {}
    for key, value in mx.nd.load(params_path).items():
        if key.endswith(".beta"):
            continue
        arrays[key] = mx.nd.zeros_like(value) if key.endswith(".running_mean") else value
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    mx.nd.save(out_path, arrays)
    return as_trained(cfg, "nobias"), out_path, shifts


def export_zero_shift(cfg, params_path: str, out_dir: str, onnx: bool = False,
                      device: Optional[str] = None, evaluate: bool = True) -> dict:
    """Export `params_path` (trained with stock BatchNorm) bias-free, shifts dropped; the
    report's forced_zero_shift holds each layer's dropped shift and, with `evaluate`, the val
    metric before (the stock model) and after (the deploy graph)."""
    bias_free, dropped, shifts = drop_shifts(cfg, params_path,
                                             os.path.join(out_dir, "zero_shift.params"))
    report = export_deploy(bias_free, dropped, out_dir, onnx=onnx, device=device)
    report["forced_zero_shift"] = {"layers": shifts}
    if evaluate:
        before = evaluate_checkpoint(as_trained(cfg, "batchnorm"), params_path,
                                     os.path.join(out_dir, "before"), progress=False,
                                     device=device)
        after = evaluate_checkpoint(bias_free, None, os.path.join(out_dir, "after"),
                                    progress=False, deploy_dir=out_dir, device=device)
        report["forced_zero_shift"].update(metric=before.metric, before=before.value,
                                           after=after.value)
    write_json(os.path.join(out_dir, "export_report.json"), report)
    return report
