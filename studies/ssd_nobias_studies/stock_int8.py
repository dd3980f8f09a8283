"""The stock INT8 baseline: a stock-BatchNorm model's accelerator graph (its convolutions with
the biases BatchNorm folds into, ReLU, the 12 raw head outputs) quantized the ordinary way by
ONNX Runtime, asymmetric uint8 activations, per-channel int8 weights, int32 biases, with the
calibration images and method the bias-free pair uses. The host part (head biases, softmax,
decoding, NMS) is the bias-free pair's. What going bias-free costs in INT8 is the difference
between this pair's drop from its own float32 and the bias-free pair's.
"""
from __future__ import annotations

import os
from typing import Dict

import mxnet as mx

from ssd_nobias.atomic import write_json
from ssd_nobias.config import base_size, eval_metric
from ssd_nobias.data.datasets import val_set
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.errors import DataError, require
from ssd_nobias.export.accelerator import deploy_prefix, write_float_pair
from ssd_nobias.export.deploy import fold_ssd
from ssd_nobias.export.inputs import parity_images
from ssd_nobias.export.int8 import quantize_ordinary
from ssd_nobias.export.split import calibration_images, layer_figures, pair_val_map
from ssd_nobias.runtime.accelerator import FLOAT_ONNX, INT8_ONNX
from ssd_nobias.runtime.host import HostPart
from ssd_nobias.runtime.predictors import load_trained

STOCK_DIR = "stock_int8"
STOCK_HEADS_DIR = "stock_int8_heads"  # the same, with the heads equalized as the bias-free pair's


def export_stock_int8(cfg, params_path: str, export_dir: str, calib_images: int = 64,
                      calib_method: str = "minmax", progress: bool = True,
                      equalize_heads: bool = False) -> Dict:
    """Write `export_dir`/stock_int8/ (the float32 and ordinary INT8 accelerator graph of a
    stock-BatchNorm checkpoint, and the host part) beside the deploy graph export_deploy wrote
    there; return (and write as stock_int8.json) the val metric of both pairs and, per layer,
    the weight-scale spread and SQNR against float32 on the calibration images (as the
    bias-free export reports them). `equalize_heads`: into stock_int8_heads/, each head channel
    scaled to its own range before quantization, as the bias-free INT8 pair's heads are."""
    require("onnx", "onnxruntime", extra="onnx", what="the stock INT8 baseline")
    if cfg.model.norm != "batchnorm":
        raise DataError(f"the stock INT8 baseline quantizes a stock-BatchNorm model; the config "
                        f"says model.norm={cfg.model.norm}")
    deploy_prefix(export_dir, cfg.model.name)
    ctx = [mx.cpu()]
    dataset, classes = val_set(cfg)
    net, classes = load_trained(cfg, params_path, ctx, classes=classes)
    x = parity_images(dataset, Preprocess.from_config(cfg))
    folder = os.path.join(export_dir, STOCK_HEADS_DIR if equalize_heads else STOCK_DIR)
    pair = write_float_pair(fold_ssd(net, ctx), x, export_dir, folder, cfg.model.name,
                            base_size(cfg))
    float_path, int8_path = pair.onnx, os.path.join(folder, INT8_ONNX)
    images = calibration_images(cfg, calib_images)
    scales = quantize_ordinary(float_path, int8_path, images, calib_method, progress,
                               equalize_heads)
    if scales:
        HostPart(pair.host.spec, pair.host.anchors, pair.host.biases, scales).save(folder)
    layers = layer_figures(float_path, int8_path, images, scales)
    val = {key: pair_val_map(cfg, dataset, classes, folder, graph, progress)
           for key, graph in (("float32_pair", FLOAT_ONNX), ("int8_pair", INT8_ONNX))}
    report = {"folder": folder, "params": params_path, "float32": float_path, "int8": int8_path,
              "quantization": "ONNX Runtime quantize_static defaults: QDQ, per-channel int8 "
                              "weights, asymmetric uint8 activations, int32 biases"
                              + ("; heads equalized per channel" if equalize_heads else ""),
              "calibration": {"images": len(images), "method": calib_method, "split": "train"},
              "val": {"metric": eval_metric(cfg), **val}, "layers": layers}
    write_json(os.path.join(folder, "stock_int8.json"), report)
    return report
