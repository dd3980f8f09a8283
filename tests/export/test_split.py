"""The split export: an accelerator graph of weight-only convolutions and ReLU (float32 and
INT8 with every zero point 0), the host part, their parity with the deploy graph, and the
proof walked from the saved files."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import onnx
import pytest
from gluoncv.nn.coder import MultiPerClassDecoder
from onnx import numpy_helper

from ssd_nobias.runtime.host import per_class_nms
from ssd_nobias.export.proof import prove
from ssd_nobias.errors import DataError
from ssd_nobias.runtime.predictors import load_predictor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")


@pytest.fixture(scope="module")
def split(split_export):
    return split_export


def gluoncv_postprocess(probs, boxes, thresh=0.01, nms=0.45, topk=400, keep=100):
    """GluonCV SSD's own post-processing (MultiPerClassDecoder + box_nms) in MXNet."""
    cls_ids, scores = MultiPerClassDecoder(probs.shape[-1], thresh=thresh)(mx.nd.array(probs))
    boxes = mx.nd.array(boxes)
    per_class = [mx.nd.concat(cls_ids.slice_axis(axis=-1, begin=i, end=i + 1),
                              scores.slice_axis(axis=-1, begin=i, end=i + 1), boxes, dim=-1)
                 for i in range(probs.shape[-1] - 1)]
    out = mx.nd.contrib.box_nms(mx.nd.concat(*per_class, dim=1), overlap_thresh=nms, topk=topk,
                                valid_thresh=0.01, id_index=0, score_index=1, coord_start=2,
                                force_suppress=False).slice_axis(axis=1, begin=0, end=keep)
    return out.asnumpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_host_nms_is_gluoncvs_to_the_bit(seed):
    """Random boxes on a coarse grid (many overlaps), scores with ties: the same detections."""
    rng = np.random.RandomState(seed)
    anchors, classes = 300, 3
    logits = rng.randint(-3, 4, (1, anchors, classes + 1)).astype(np.float32)  # ties
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (e / e.sum(-1, keepdims=True)).astype(np.float32)
    xy = rng.randint(0, 10, (anchors, 2)).astype(np.float32) * 10
    wh = rng.randint(1, 5, (anchors, 2)).astype(np.float32) * 10
    boxes = np.concatenate([xy, xy + wh], 1)[None]
    want = gluoncv_postprocess(probs, boxes, topk=120, keep=50)[0]
    cls, score, box = per_class_nms(probs[0, :, 1:], boxes[0], 0.01, 0.45, 120, 50)
    valid = want[:, 0] >= 0
    assert valid.sum() == len(cls) > 10
    np.testing.assert_array_equal(cls, want[valid, 0])
    np.testing.assert_array_equal(score, want[valid, 1])
    np.testing.assert_array_equal(box, want[valid, 2:])


@pytest.mark.slow
def test_the_accelerator_graph_is_weight_only_convolutions_and_relu(split):
    _, _, folder, report = split
    proof = prove(os.path.join(folder, "accelerator", "accelerator.onnx"))
    assert proof.ok, proof.problems
    assert proof.ops == {"Conv": 47, "Relu": 35} and proof.convs == 47
    model = onnx.load(os.path.join(folder, "accelerator", "accelerator.onnx"))
    assert [o.name for o in model.graph.output] == [f"cls{i}" for i in range(6)] + \
        [f"box{i}" for i in range(6)]
    assert report["head_biases_on_host"] == 12  # heads_bias: true moves 12 biases out
    assert report["proof"]["ok"]
    symbol = json.load(open(os.path.join(folder, "accelerator", "accelerator-symbol.json")))
    ops = {n["op"] for n in symbol["nodes"]} - {"null"}
    assert ops == {"Convolution", "Activation"}
    assert all(n["attrs"]["no_bias"] == "True" for n in symbol["nodes"]
               if n["op"] == "Convolution")


def test_the_int8_graph_has_every_conv_quantized_and_every_zero_point_zero(split):
    _, _, folder, report = split
    path = os.path.join(folder, "accelerator", "accelerator.int8.onnx")
    proof = prove(path)
    assert proof.ok, proof.problems
    assert proof.convs == proof.quantized_convs == 47
    assert proof.types == {"int8": 13, "uint8": 35}  # the input and the 12 heads int8
    assert report["int8"]["head_outputs"] == "int8"
    assert report["int8"]["host_onnx_same_as_numpy"] is True
    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zero_points = [inits[n.input[2]] for n in qdq]
    assert len(zero_points) == proof.zero_points == len(qdq)
    assert all(not zp.any() for zp in zero_points)
    assert all(len(n.input) == 2 for n in model.graph.node if n.op_type == "Conv")
    layers = report["int8"]["layers"]
    assert [layer["layer"] for layer in layers][:3] == ["conv0", "dw1", "pw1"]
    assert {"extra4_conv", "cls0", "box5"} <= {layer["layer"] for layer in layers}
    assert len(layers) == 47 and all(np.isfinite(layer["sqnr_db"]) for layer in layers)
    assert all(layer["weight_scale_max_over_median"] >= 1 for layer in layers)
    val = report["int8"]["val"]
    assert val["metric"] == "voc07" and 0 <= val["int8_pair"] <= 1
    assert report["int8"]["calibration"] == {"images": 4, "method": "minmax", "split": "train"}
    with open(os.path.join(folder, "export_report.json")) as f:
        entry = json.load(f)["accelerator"]
    assert entry["int8"]["proof"]["ok"] and not entry["int8"]["proof"]["tensorrt_form"]
    assert entry["int8_signed"]["proof"]["tensorrt_form"]
    assert entry["int8_signed"]["proof"]["not_tensorrt_because"] == []
    assert "tensorrt_form" not in entry["proof"]  # the float32 graph


def test_onnx_runtime_runs_every_int8_conv_as_one_integer_kernel(split):
    from ssd_nobias.runtime.onnxrt import optimized_ops

    folder = os.path.join(split[2], "accelerator")
    ops = optimized_ops(os.path.join(folder, "accelerator.int8.onnx"))
    assert ops["QLinearConv"] == 47 and "Conv" not in ops  # Q/DQ pairs fused away
    assert ops["DequantizeLinear"] == 12  # the 12 int8 head outputs handed to the host
    assert optimized_ops(os.path.join(folder, "accelerator.onnx")).get("QLinearConv", 0) == 0
    with pytest.raises(DataError, match="nothere.onnx' does not exist"):
        optimized_ops(os.path.join(folder, "nothere.onnx"))


def _dominated_heads(folder: str, path: str) -> None:
    """A copy of the float accelerator graph whose cls0 channel 0 is 1000x larger (as a
    background logit can be): one tensor scale would leave the other channels nothing."""
    model = onnx.load(os.path.join(folder, "accelerator.onnx"))
    conv = next(n for n in model.graph.node if n.output[0] == "cls0")
    init = next(i for i in model.graph.initializer if i.name == conv.input[1])
    weight = numpy_helper.to_array(init).copy()
    weight[0] *= 1000
    init.CopyFrom(numpy_helper.from_array(weight, init.name))
    onnx.save(model, path)


def test_int8_head_outputs_give_every_channel_its_own_range(split, tmp_path):
    """Each head output channel is equalized before quantization: its int8 step is its own
    calibrated max |y| / 127, and the int8 output is the int32 accumulators rounded to it."""
    from ssd_nobias.export.int8 import quantize
    from ssd_nobias.runtime.kernels import int8_kernels
    from ssd_nobias.runtime.onnxrt import session

    folder = os.path.join(split[2], "accelerator")
    float_path = str(tmp_path / "dominated.onnx")
    _dominated_heads(folder, float_path)
    rng = np.random.RandomState(1)
    images = [rng.normal(0, 1, (3, 300, 300)).astype(np.float32) for _ in range(2)]
    int8_path, int32_path = str(tmp_path / "heads8.onnx"), str(tmp_path / "heads32.onnx")
    scales = quantize(float_path, int8_path, images, progress=False, heads="int8")
    assert quantize(float_path, int32_path, images, progress=False, heads="int32") is None
    assert prove(int8_path).types == {"int8": 13, "uint8": 35}
    proof = prove(int32_path)
    assert proof.ok and proof.types == {"int8": 1, "uint8": 35, "int32 head": 12}

    batch = {"data": np.stack(images)}
    exact = int8_kernels("onnxruntime") == "exact"
    reference = session(float_path).run(None, batch)
    q8 = session(int8_path).run(None, batch)
    q32 = session(int32_path).run(None, batch)
    model = onnx.load(int8_path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for output, ref, out8, out32, scale in zip(model.graph.output, reference, q8, q32, scales):
        s_y = float(inits[dq[output.name].input[1]])
        levels = out8 / s_y  # the int8 values the head conv produced
        assert np.abs(levels - np.round(levels)).max() < 1e-3 and np.abs(levels).max() <= 128
        step = s_y * scale  # channel c's step in the float graph's units
        np.testing.assert_allclose(step * 127, np.abs(ref).max(axis=(0, 2, 3)), rtol=1e-3)
        # the int32 accumulators (scaled) rounded to the channel's step, saturating at the
        # range calibrated in float (an output quantization error can push values past it).
        # The int32 graph sums its conv in float and ONNX Runtime's integer kernel requantizes
        # with a float multiplier: a value that sits on a half step may round either way, so
        # every value is within one step and all but a few within half a step (+ 0.05).
        # Without VNNI, ONNX Runtime fuses the two graphs' shared layers into different
        # kernels, of which only some saturate pairs (runtime/integer.py): no such bound there.
        if exact:
            off = np.abs(levels - np.clip(out32 / step.reshape(1, -1, 1, 1), -128, 127))
            assert off.max() <= 1.0 + 1e-3 and (off > 0.55).mean() < 1e-3
    assert scales[0][0] > 100 * np.median(scales[0])  # the dominant channel kept its own range


def test_the_pair_detects_as_the_deploy_graph(split, alive_model):
    cfg, _, folder, report = split
    p = report["parity"]
    assert max(p["mxnet"].values()) <= 1e-4 and max(p["onnx"].values()) <= 1e-4
    assert isinstance(p["same_detections_as_deploy"], bool)
    x = mx.nd.array(np.random.RandomState(5).normal(0, 1, (2, 3, 300, 300)))
    deploy = load_predictor(cfg, deploy_dir=alive_model[2])
    pair = load_predictor(cfg, accelerator_dir=os.path.join(folder, "accelerator"))
    assert pair.classes == deploy.classes
    want = [a.asnumpy() for a in deploy.predictor(x)]
    got = [a.asnumpy() for a in pair.predictor(x)]
    assert (want[0] >= 0).sum() > 10 and got[0].shape == want[0].shape
    # NMS may swap near-tied boxes: compare each image's sorted scores, then the best box
    np.testing.assert_allclose(np.sort(got[1], axis=1), np.sort(want[1], axis=1), atol=1e-4)
    np.testing.assert_allclose(got[2][:, 0], want[2][:, 0], rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("int8", [False, True])
def test_host_onnx_computes_what_the_numpy_host_part_does(split, int8):
    from ssd_nobias.runtime.host import HostPart
    from ssd_nobias.runtime.onnxrt import session

    folder = os.path.join(split[2], "accelerator")
    host = HostPart.load(folder, int8)
    onnx_host = session(os.path.join(folder, "host.int8.onnx" if int8 else "host.onnx"))
    shapes = [(2, len(b.reshape(-1)), s, s) for b, s in zip(host.biases, [19, 10, 5, 3, 2, 1] * 2)]
    rng = np.random.RandomState(0)
    heads = [rng.normal(0, 2, shape).astype(np.float32) for shape in shapes]
    if int8:  # the INT8 graph's outputs: the host multiplies each channel by its scale first
        float_host = HostPart.load(folder)
        assert float_host.channel_scales is None and len(host.channel_scales) == 12
        heads = [h / s for h, s in zip(heads, host.channel_scales)]
        np.testing.assert_allclose(host(heads)[1], float_host(
            [h * s for h, s in zip(heads, host.channel_scales)])[1])
    names = [i.name for i in onnx_host.get_inputs()]
    want = host(heads)
    got = onnx_host.run(["ids", "scores", "bboxes"], dict(zip(names, heads)))
    assert (want[0] >= 0).sum() > 50
    np.testing.assert_allclose(np.sort(got[1], axis=1), np.sort(want[1], axis=1), atol=1e-5)
    np.testing.assert_allclose(got[2][:, 0], want[2][:, 0], rtol=1e-4, atol=1e-3)


@pytest.mark.subprocess
def test_the_host_part_loads_without_mxnet(split):
    folder = os.path.join(split[2], "accelerator")
    code = ("import sys, numpy as np; sys.modules['mxnet'] = None\n"
            "from ssd_nobias.runtime.host import HostPart\n"
            f"host = HostPart.load({folder!r})\n"
            "outs = [np.zeros((1, c, s, s), np.float32) for c, s in "
            "zip([20, 30, 30, 30, 20, 20] * 0 + [a.size for a in host.biases[:6]] + "
            "[a.size for a in host.biases[6:]], [19, 10, 5, 3, 2, 1] * 2)]\n"
            "ids, scores, boxes = host(outs)\n"
            "print(ids.shape, boxes.shape)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(1, 100, 1) (1, 100, 4)"


def _broken_copy(src, dst, edit):
    model = onnx.load(src)
    edit(model)
    onnx.save(model, dst)
    return dst


def test_the_proof_names_the_node_that_breaks_a_rule(split, alive_model, tmp_path):
    folder = os.path.join(split[2], "accelerator")
    whole = prove(alive_model[3])  # the deploy ONNX: biases, softmax, NMS inside
    assert not whole.ok
    assert any("NonMaxSuppression is not allowed" in p for p in whole.problems)
    assert any("Conv has a bias input" in p for p in whole.problems)

    def nonzero_zero_point(model):
        for init in model.graph.initializer:
            if init.name.endswith("_zero_point") and init.data_type == onnx.TensorProto.UINT8:
                value = numpy_helper.to_array(init).copy()
                value[...] = 3
                init.CopyFrom(numpy_helper.from_array(value, init.name))
                return

    bad = prove(_broken_copy(os.path.join(folder, "accelerator.int8.onnx"),
                             str(tmp_path / "zp.onnx"), nonzero_zero_point))
    assert any("zero point [3] is not 0" in p for p in bad.problems)

    def float_conv(model):  # the first conv reads the float input directly
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        conv.input[0] = "data"

    bad = prove(_broken_copy(os.path.join(folder, "accelerator.int8.onnx"),
                             str(tmp_path / "f.onnx"), float_conv))
    assert any("Conv input is not quantized" in p for p in bad.problems)
    with pytest.raises(DataError, match="nope.onnx"):
        prove(str(tmp_path / "nope.onnx"))


@pytest.mark.slow
@pytest.mark.subprocess
def test_audit_takes_an_accelerator_folder_or_graph_and_refuses_onnx_by_name(split, alive_model):
    folder = os.path.join(split[2], "accelerator")
    for name, given in (("accelerator.int8.onnx", [folder, "--int8"]),
                        ("accelerator.onnx", [folder]),
                        ("accelerator.int8.onnx", [os.path.join(folder, "accelerator.int8.onnx")])):
        done = subprocess.run([sys.executable, os.path.join(SCRIPTS, "audit_params.py"),
                               "--accelerator", *given], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert ": OK; 47 Conv without bias" in done.stdout
        # what an integer engine runs: one int32 multiplier and right shift per channel
        assert ("requantization: 47 convs, per output channel an int32 multiplier in [2^30, "
                "2^31)" in done.stdout) == name.endswith("int8.onnx")
    done = subprocess.run([sys.executable, os.path.join(SCRIPTS, "audit_params.py"),
                           "--accelerator", alive_model[3]], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and "NonMaxSuppression is not allowed" in done.stdout
    done = subprocess.run([sys.executable, os.path.join(SCRIPTS, "audit_params.py"),
                           "--onnx", alive_model[3]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--onnx names a whole model in eval and detect" in done.stderr


@pytest.mark.slow
@pytest.mark.subprocess
def test_eval_and_detect_run_the_int8_pair(split, tmp_path):
    cfg, _, folder, report = split
    config = os.path.join(str(tmp_path), "config.yaml")
    with open(config, "w") as f:
        f.write(cfg.dump())
    acc = os.path.join(folder, "accelerator")
    done = subprocess.run([sys.executable, os.path.join(SCRIPTS, "eval_ssd.py"), "--config",
                           config, "--accelerator", acc, "--int8", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    from ssd_nobias.runtime.kernels import int8_kernels
    verdict = "INT8: onnxruntime is " + \
        ("exact" if int8_kernels("onnxruntime") == "exact" else "not exact") + " on this CPU"
    assert done.stdout.startswith(verdict)  # the one line saying whether to trust it here
    with open(tmp_path / "eval.json") as f:
        assert abs(json.load(f)["value"] - report["int8"]["val"]["int8_pair"]) < 1e-6
    image = os.path.join(cfg.data.root, "JPEGImages",
                         sorted(os.listdir(os.path.join(cfg.data.root, "JPEGImages")))[0])
    done = subprocess.run([sys.executable, os.path.join(SCRIPTS, "detect.py"), "--accelerator",
                           acc, "--int8", image, "--thresh", "0.05", "--out",
                           str(tmp_path / "det")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 image(s) at" in done.stdout and done.stdout.startswith(verdict)


@pytest.mark.slow
def test_the_signed_variant_is_tensorrts_qdq_form(split):
    """accelerator.int8-signed.onnx: every activation signed int8 with zero point 0, each ReLU
    before its QuantizeLinear (Conv -> Relu -> Q, one rounding per layer), proven from the
    file; the uint8 variant is not signed; eval and detect run it by naming the file."""
    from ssd_nobias.runtime.accelerator import OnnxAccelerator

    cfg, _, folder, report = split
    acc = os.path.join(folder, "accelerator")
    path = os.path.join(acc, "accelerator.int8-signed.onnx")
    signed, unsigned = prove(path), prove(os.path.join(acc, "accelerator.int8.onnx"))
    assert signed.ok and signed.signed and signed.types == {"int8": 48}
    assert signed.tensorrt_form and signed.tensorrt == []
    assert "(all signed: TensorRT's Q/DQ form)" in signed.summary()
    assert signed.quantized_convs == 47 and signed.ops["Relu"] == 35
    assert unsigned.ok and not unsigned.signed and not unsigned.tensorrt_form
    assert len(unsigned.tensorrt) == 35 * 2  # each ReLU output's Q and DQ: uint8
    assert all("uint8 (TensorRT quantizes to int8 only)" in r for r in unsigned.tensorrt)
    assert "not TensorRT's Q/DQ form (70 reason(s)" in unsigned.summary()
    graph = onnx.load(path).graph
    users = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node.op_type)
    relus = [n for n in graph.node if n.op_type == "Relu"]
    producer = {o: n.op_type for n in graph.node for o in n.output}
    assert all(producer[r.input[0]] == "Conv" and users[r.output[0]] == ["QuantizeLinear"]
               for r in relus)
    entry = report["int8_signed"]
    assert entry["activations"] == "int8" and entry["proof"]["ok"]
    assert 0.0 <= entry["val"]["int8_pair"] <= 1.0
    loaded = load_predictor(accelerator_dir=path)
    x = np.random.RandomState(0).normal(0, 1, (1, 3, 300, 300)).astype(np.float32)
    for got, want in zip(loaded.predictor.accelerator(x), OnnxAccelerator(path)(x)):
        np.testing.assert_array_equal(got, want)
    assert loaded.classes == load_predictor(accelerator_dir=acc, int8=True).classes


@pytest.mark.slow
def test_the_proof_names_what_tensorrt_would_refuse(split, tmp_path):
    """A signed graph with a weight of -128, weight scales along axis 1 and an activation
    scaled per channel: still bias-free (no problem), but three reasons against TensorRT."""
    model = onnx.load(os.path.join(split[2], "accelerator", "accelerator.int8-signed.onnx"))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    dq_weights = [n for n in graph.node
                  if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    first = dq_weights[0]
    w = numpy_helper.to_array(inits[first.input[0]]).copy()
    w.flat[0] = -128
    inits[first.input[0]].CopyFrom(numpy_helper.from_array(w, first.input[0]))
    second = dq_weights[1]
    for a in second.attribute:
        if a.name == "axis":
            a.i = 1
    q = next(n for n in graph.node if n.op_type == "QuantizeLinear"
             and n.input[0] != graph.input[0].name)
    scale = numpy_helper.to_array(inits[q.input[1]])
    inits[q.input[1]].CopyFrom(numpy_helper.from_array(np.full(2, scale, np.float32),
                                                       q.input[1]))
    path = str(tmp_path / "bent.onnx")
    onnx.save(model, path)
    proof = prove(path)
    assert proof.ok and proof.signed and not proof.tensorrt_form
    per_channel = [n.name for n in graph.node if n.op_type in ("QuantizeLinear",
                                                                "DequantizeLinear")
                   and n.input[1] == q.input[1]]  # the Q and the DQ that share its scale
    assert q.name in per_channel and len(per_channel) == 2
    assert sorted(proof.tensorrt) == sorted([
        f"{first.name}: a weight of -128 (TensorRT's int8 weights are in [-127, 127])",
        f"{second.name}: weight scales along axis 1, not 0 (the output channels)"] + [
        f"{name}: an activation quantized per channel (TensorRT takes one scale per "
        f"activation tensor)" for name in per_channel])
