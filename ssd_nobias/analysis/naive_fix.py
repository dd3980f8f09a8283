"""The naive fix, measured: a stock-BatchNorm checkpoint exported bias-free by dropping the
shifts its norm layers learned (beta, running mean), with the val metric before and after.

This is what `export_ssd.py --force-zero-shift` reports, and the study's arm (c).
"""
from __future__ import annotations

import os
from typing import Optional

from ssd_nobias.atomic import write_json
from ssd_nobias.evaluation.evaluate import evaluate_checkpoint
from ssd_nobias.export.deploy import export_deploy, with_stock_recipe


def export_zero_shift(cfg, params_path: str, out_dir: str, onnx: bool = False,
                      device: Optional[str] = None) -> dict:
    """Export `params_path` (trained with stock BatchNorm) bias-free as `cfg` asks, shifts
    dropped; the report's forced_zero_shift gains the metric before (the stock model) and
    after (the deploy graph). Params with no shift export as export_deploy does."""
    stock = with_stock_recipe(cfg)  # what the checkpoint was trained as
    stock.defrost()
    stock.model.norm, stock.model.bias_free = "batchnorm", ["*"]
    stock.freeze()
    report = export_deploy(cfg, params_path, out_dir, force_zero_shift=True, onnx=onnx,
                           device=device)
    if "forced_zero_shift" not in report:
        return report
    before = evaluate_checkpoint(stock, params_path, os.path.join(out_dir, "before"),
                                 progress=False, device=device)
    after = evaluate_checkpoint(cfg, None, os.path.join(out_dir, "after"), progress=False,
                                deploy_dir=out_dir, device=device)
    report["forced_zero_shift"].update(metric=before.metric, before=before.value,
                                       after=after.value)
    write_json(os.path.join(out_dir, "export_report.json"), report)
    return report
