"""MXNet's own INT8 (studies/ssd_nobias_studies/mxnet_int8.py), the quantization the studies
compare the bias-free INT8 export with."""
import json

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.runtime.predictors import load_deploy
from ssd_nobias_studies.mxnet_int8 import quantize_deploy


def test_mxnet_int8_quantizes_every_convolution_and_still_detects(alive_model):
    cfg, _, deploy, _ = alive_model
    fp32, _ = load_deploy(deploy, [mx.cpu()])
    rng = np.random.RandomState(0)
    images = [rng.normal(0, 1, (3, 300, 300)).astype(np.float32) for _ in range(4)]
    int8 = quantize_deploy(load_deploy(deploy, [mx.cpu()])[0], images)
    x = mx.nd.array(np.stack(images[:2]))
    want, got = [a.asnumpy() for a in fp32(x)], [a.asnumpy() for a in int8(x)]
    assert got[0].shape == want[0].shape and (got[0] >= 0).sum() > 10
    symbol = json.loads(int8._cached_graph[1].tojson())
    ops = [n["op"] for n in symbol["nodes"]]
    assert "Convolution" not in ops and ops.count("_sg_mkldnn_conv") == 47
    with pytest.raises(ValueError, match="calib_mode"):
        quantize_deploy(fp32, images, calib_mode="kl")
