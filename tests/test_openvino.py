"""OpenVINO's CPU runtime (ssd_nobias/runtime/openvino.py) behind the same predictors as ONNX
Runtime: the float32 accelerator graph and the whole model equal ONNX Runtime's to the parity
rule, the INT8 graphs return int8 head values, eval and detect take --runtime openvino."""
import os
import subprocess
import sys

import numpy as np
import pytest

from ssd_nobias.export.deploy import PARITY_RTOL, relative_error

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(split_export, alive_model):
    cfg, params, folder, _ = split_export
    return cfg, params, folder, alive_model[3]


def batch():
    return np.random.RandomState(0).normal(0, 1, (2, 3, 300, 300)).astype(np.float32)


@pytest.mark.slow
def test_the_float32_accelerator_graph_equals_onnx_runtimes(exported):
    from ssd_nobias.runtime.accelerator import OnnxAccelerator
    from ssd_nobias.runtime.openvino import OpenVinoAccelerator

    _, _, folder, _ = exported
    path = os.path.join(folder, "accelerator", "accelerator.onnx")
    ov, ort = OpenVinoAccelerator(path), OnnxAccelerator(path)
    assert ov.outputs == ort.outputs  # cls0..cls5, box0..box5, in the file's order
    for got, want in zip(ov(batch()), ort(batch())):
        assert got.shape == want.shape
        assert relative_error(got, want) <= PARITY_RTOL


@pytest.mark.slow
@pytest.mark.parametrize("graph", ["accelerator.int8.onnx", "accelerator.int8-signed.onnx"])
def test_the_int8_graphs_return_int8_head_values(exported, graph):
    """Whatever OpenVINO's integer kernels round differently, each head output is an int8
    value times its scale, as the file says."""
    from ssd_nobias.runtime.integer import IntegerAccelerator
    from ssd_nobias.runtime.openvino import OpenVinoAccelerator

    _, _, folder, _ = exported
    path = os.path.join(folder, "accelerator", graph)
    heads = IntegerAccelerator(path).heads
    for out, (_, _, scale) in zip(OpenVinoAccelerator(path)(batch()), heads):
        q = out / scale
        np.testing.assert_allclose(q, np.rint(q), atol=1e-3)
        assert q.min() >= -128.001 and q.max() <= 127.001 and np.any(q != 0)


@pytest.mark.slow
def test_the_whole_model_detects_as_in_onnx_runtime(exported):
    import mxnet as mx

    from ssd_nobias.runtime.predictors import OnnxPredictor

    _, _, _, onnx_path = exported
    x = mx.nd.array(batch())
    ov, ort = OnnxPredictor(onnx_path, "openvino")(x), OnnxPredictor(onnx_path)(x)
    for image in range(2):
        got, want = ov[1][image, :5, 0].asnumpy(), ort[1][image, :5, 0].asnumpy()
        assert relative_error(got, want) <= PARITY_RTOL  # the five best scores


@pytest.mark.slow
@pytest.mark.subprocess
def test_eval_takes_runtime_openvino(exported, tmp_path):
    cfg, _, folder, _ = exported
    config = tmp_path / "config.yaml"
    config.write_text(cfg.dump())
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "eval_ssd.py"),
                           "--config", str(config), "--accelerator",
                           os.path.join(folder, "accelerator", "accelerator.int8-signed.onnx"),
                           "--runtime", "openvino", "--out", str(tmp_path / "e")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "VOC07 mAP" in done.stdout
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "eval_ssd.py"),
                           "--config", str(config), "--deploy", folder, "--runtime",
                           "openvino"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--runtime openvino runs an ONNX file" in done.stderr
