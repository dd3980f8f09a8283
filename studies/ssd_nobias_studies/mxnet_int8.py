"""The deploy graph through MXNet's own INT8 path (quantize_net_v2 on MKLDNN, channel-wise
weights, calibrated), as GluonCV's eval_ssd.py --calibration does it: for MXNet users on CPUs.

It is no artifact for a bias-free integer engine: its params stay float32 and are quantized
at the first forward, Softmax/decoding/NMS stay inside, and mx.onnx cannot convert the
quantized operators. The accelerator export (ssd_nobias/export/split.py) is that artifact.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import mxnet as mx
import numpy as np

CALIB_MODES = ("naive", "entropy")


def quantize_deploy(block: mx.gluon.SymbolBlock, images: Sequence[np.ndarray],
                    calib_mode: str = "naive", batch_size: int = 8) -> mx.gluon.SymbolBlock:
    """The deploy graph `block` with every convolution INT8 (MKLDNN, channel-wise), its ranges
    calibrated on `images` ((3, H, W) normalized); flatten and concat stay float, as GluonCV."""
    from mxnet.contrib.quantization import quantize_net_v2

    if calib_mode not in CALIB_MODES:
        raise ValueError(f"calib_mode '{calib_mode}' is not one of {CALIB_MODES}")
    data = mx.nd.array(np.stack(images))
    calib = mx.io.NDArrayIter(data=data, batch_size=min(batch_size, len(images)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize_net_v2(block, quantized_dtype="auto", quantize_mode="full",
                                    quantize_granularity="channel-wise",
                                    exclude_layers_match=["flatten", "concat"],
                                    calib_data=calib, calib_mode=calib_mode,
                                    num_calib_examples=len(images), ctx=mx.cpu())
    quantized.hybridize(static_alloc=True, static_shape=True)
    return quantized
