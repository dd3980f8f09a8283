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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def exported(split_export, alive_model):
    cfg, params, folder, _ = split_export
    return cfg, params, folder, alive_model[3]


def run_with_config(cfg, tmp_path, script: str, *args: str) -> subprocess.CompletedProcess:
    """scripts/ or bench/ `script` run with `cfg` written as --config."""
    config = tmp_path / "config.yaml"
    config.write_text(cfg.dump())
    return subprocess.run([sys.executable, os.path.join(ROOT, script), "--config", str(config),
                           *args], capture_output=True, text=True, timeout=600)


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
    done = run_with_config(cfg, tmp_path, "scripts/eval_ssd.py", "--accelerator",
                           os.path.join(folder, "accelerator", "accelerator.int8-signed.onnx"),
                           "--runtime", "openvino", "--out", str(tmp_path / "e"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "VOC07 mAP" in done.stdout
    done = run_with_config(cfg, tmp_path, "scripts/eval_ssd.py", "--deploy", folder,
                           "--runtime", "openvino")
    assert done.returncode == 2 and "--runtime openvino runs an ONNX file" in done.stderr


@pytest.mark.slow
def test_each_int8_layer_alone_is_within_one_lsb_of_the_integer_reference(exported):
    """Teacher-forced as the ONNX Runtime test in test_integer.py: each conv cut out of the
    graph, given ONNX Runtime's input tensor, in OpenVINO; its per-layer rounding is as close
    to the exact result as ONNX Runtime's (what the end-to-end drift is not); on a CPU without
    VNNI, to the reference emulating OpenVINO's saturating pairs."""
    from ssd_nobias.runtime.integer import IntegerAccelerator
    from ssd_nobias.runtime.kernels import int8_kernels
    from ssd_nobias.runtime.onnxrt import session
    from ssd_nobias.errors import DataError
    from ssd_nobias.runtime.openvino import run_layer

    _, _, folder, _ = exported
    ref = IntegerAccelerator(os.path.join(folder, "accelerator", "accelerator.int8.onnx"))
    kernels = int8_kernels("openvino")
    x = batch()[:1]
    names = [c.output for c in ref.convs]
    ort = dict(zip(names, session(ref.path, extra_outputs=names).run(names, {"data": x})))
    total = equal = 0
    for conv in ref.convs[1:]:  # the first takes the float input
        want = conv(ort[conv.source], kernels).astype(np.int64)
        got = run_layer(ref.path, conv.source, conv.output, ort[conv.source])
        assert got.dtype == conv.out_dtype
        diff = np.abs(got.astype(np.int64) - want)
        assert diff.max() <= 1, conv.name
        total, equal = total + diff.size, equal + int(np.sum(diff == 0))
    assert equal / total >= 0.999
    with pytest.raises(DataError, match="no layer from 'nothere' to 'cls0'"):
        run_layer(ref.path, "nothere", "cls0", x)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("isa", ["", "AVX2"])
def test_the_integer_reference_bench_compares_both_runtimes_layer_by_layer(exported, tmp_path,
                                                                            isa):
    """Each runtime's layers within 1 LSB of the reference computing as its kernels on this CPU
    do; OpenVINO held to AVX2 (oneDNN obeys ONEDNN_MAX_CPU_ISA on any newer CPU) saturates
    pairs, and the emulation, not the exact result, is what it matches."""
    import json

    cfg, _, folder, _ = exported
    out = tmp_path / "integer.json"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa} if isa else None
    config = tmp_path / "config.yaml"
    config.write_text(cfg.dump())
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "integer_reference.py"),
                           "--config", str(config), "--accelerator",
                           os.path.join(folder, "accelerator"), "--images", "2", "--out",
                           str(out), f"output_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(out) as f:
        report = json.load(f)
    for key in ("per_layer_same_input", "per_layer_same_input_openvino"):
        assert report[key]["max_lsb"] <= 1 and report[key]["within_one_lsb"] == 1.0
    if isa:
        assert report["kernels"]["openvino"] == "openvino"
        assert report["per_layer_same_input_openvino_exact"]["max_lsb"] > 1
    # the same 46 layers (all but the first, which takes the float input) in both counts
    assert report["per_layer_same_input_openvino"]["values"] == \
        report["per_layer_same_input_onnxruntime_same_layers"]["values"]
    assert report["all_layers_end_to_end_openvino"]["values"] == \
        report["all_layers_end_to_end"]["values"]
    assert set(report["first_layer_differing"]) == {"onnxruntime", "openvino"}
    assert set(report["val"]) == {"metric", "onnxruntime", "openvino", "integer",
                                  "onnxruntime-novnni", "openvino-novnni"}
