"""ONNX post-processing against GluonCV's own (per-class decoder + box_nms), and its settings."""
import mxnet as mx
import numpy as np
import onnxruntime as ort
import pytest
from gluoncv.nn.coder import MultiPerClassDecoder

from ssd_nobias import get_model
from ssd_nobias.export.deploy import fold_ssd
from ssd_nobias.export.onnx import OPSET, PostProcess, decode_nodes, find_cut, postprocess_model


def gluoncv_postprocess(probs, boxes, post):
    """What GluonCV's SSD.hybrid_forward does after the softmax and the box decoder."""
    ids, scores = MultiPerClassDecoder(post.num_classes + 1, thresh=post.score_thresh)(
        mx.nd.array(probs))
    per_class = [mx.nd.concat(ids.slice_axis(axis=-1, begin=i, end=i + 1),
                              scores.slice_axis(axis=-1, begin=i, end=i + 1),
                              mx.nd.array(boxes), dim=-1) for i in range(post.num_classes)]
    result = mx.nd.contrib.box_nms(mx.nd.concat(*per_class, dim=1),
                                   overlap_thresh=post.nms_thresh, topk=post.nms_topk,
                                   valid_thresh=post.score_thresh, id_index=0, score_index=1,
                                   coord_start=2, force_suppress=False)
    result = result.slice_axis(axis=1, begin=0, end=post.post_nms).asnumpy()
    return result[..., :1], result[..., 1:2], result[..., 2:]


def onnx_postprocess(probs, boxes, post):
    sess = ort.InferenceSession(postprocess_model(post).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    return sess.run(["ids", "scores", "bboxes"], {"probs": probs, "boxes": boxes})


def random_predictions(batch, anchors, classes, seed, spread=3.0):
    rng = np.random.RandomState(seed)
    logits = rng.normal(0, spread, (batch, anchors, classes + 1))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    corner = rng.uniform(0, 250, (batch, anchors, 2))
    size = rng.uniform(5, 80, (batch, anchors, 2))
    return probs.astype(np.float32), np.concatenate([corner, corner + size], -1).astype(np.float32)


@pytest.mark.parametrize("batch, anchors, classes, topk, post_nms, seed", [
    (1, 300, 3, 200, 100, 0),  # many overlaps, topk cuts candidates
    (3, 500, 20, 400, 100, 1),  # batched, VOC's class count
    (2, 50, 4, 1000, 30, 2),  # fewer candidates than topk
])
def test_onnx_postprocess_equals_gluoncv(batch, anchors, classes, topk, post_nms, seed):
    probs, boxes = random_predictions(batch, anchors, classes, seed)
    post = PostProcess(classes, anchors, 0.01, 0.45, min(topk, anchors * classes), post_nms)
    got = onnx_postprocess(probs, boxes, post)
    want = gluoncv_postprocess(probs, boxes, post)
    assert (want[0] >= 0).sum() > 0
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def test_nms_is_per_class_not_class_agnostic():
    """Two classes on the same box both stay: MXNet's own box_nms converter would drop one."""
    probs = np.zeros((1, 10, 4), np.float32)
    probs[..., 0] = 1
    probs[0, 3] = [0.1, 0.5, 0.4, 0.0]
    probs[0, 4] = [0.7, 0.3, 0.0, 0.0]  # same class and box as anchor 3's first: suppressed
    boxes = np.tile(np.array([10, 10, 50, 50], np.float32), (1, 10, 1))
    post = PostProcess(3, 10, 0.01, 0.45, 30, 5)
    ids, scores, bboxes = onnx_postprocess(probs, boxes, post)
    np.testing.assert_array_equal(ids[0, :, 0], [0, 1, -1, -1, -1])
    np.testing.assert_array_equal(scores[0, :, 0], np.float32([0.5, 0.4, -1, -1, -1]))
    np.testing.assert_array_equal(bboxes[0, 2:], -np.ones((3, 4)))
    np.testing.assert_array_equal(ids, gluoncv_postprocess(probs, boxes, post)[0])


def test_nothing_above_threshold_gives_all_minus_one():
    probs = np.zeros((2, 20, 3), np.float32)
    probs[..., 0] = 1
    boxes = np.ones((2, 20, 4), np.float32)
    outs = onnx_postprocess(probs, boxes, PostProcess(2, 20, 0.01, 0.45, 40, 10))
    for out in outs:
        assert out.shape[:2] == (2, 10) and (out == -1).all()


def test_find_cut_reads_gluoncv_settings_from_the_symbol(tmp_path):
    net = get_model("ssd_300_mobilenet0.25_custom", classes=["a", "b", "c"])
    net.initialize()
    net(mx.nd.zeros((1, 3, 300, 300)))
    net = fold_ssd(net, [mx.cpu()])
    net.hybridize()
    net(mx.nd.zeros((1, 3, 300, 300)))
    net.export(str(tmp_path / "m"))
    cut = find_cut(mx.sym.load(str(tmp_path / "m-symbol.json")), (1, 3, 300, 300))
    assert cut.post == PostProcess(num_classes=3, num_anchors=2268, score_thresh=0.01,
                                   nms_thresh=0.45, nms_topk=400, post_nms=100)
    assert "softmax" in cut.probs and cut.decode["format"] == "center"


@pytest.mark.parametrize("fmt, clip", [("center", -1.0), ("corner", -1.0), ("center", 0.5)])
def test_onnx_box_decode_equals_mxnet(fmt, clip):
    from onnx import TensorProto, helper

    rng = np.random.RandomState(3)
    offsets = rng.normal(0, 2, (2, 50, 4)).astype(np.float32)
    anchors = rng.uniform(0.1, 1, (1, 50, 4)).astype(np.float32)
    if fmt == "corner":
        anchors[..., 2:] += anchors[..., :2]
    attrs = {"format": fmt, "std0": "0.1", "std1": "0.1", "std2": "0.2", "std3": "0.2",
             "clip": str(clip)}
    nodes, inits = decode_nodes("offsets", "anchors", "boxes", attrs)
    graph = helper.make_graph(
        nodes, "decode",
        [helper.make_tensor_value_info("offsets", TensorProto.FLOAT, [2, 50, 4]),
         helper.make_tensor_value_info("anchors", TensorProto.FLOAT, [1, 50, 4])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [2, 50, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    sess = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, {"offsets": offsets, "anchors": anchors})[0]
    want = mx.nd.contrib.box_decode(mx.nd.array(offsets), mx.nd.array(anchors), std0=0.1,
                                    std1=0.1, std2=0.2, std3=0.2, clip=clip,
                                    format=fmt).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_an_onnx_model_without_its_preprocess_json_is_named(tmp_path):
    import onnx

    from ssd_nobias.errors import DataError
    from ssd_nobias.runtime.predictors import load_onnx

    path = tmp_path / "alone.onnx"
    onnx.save(postprocess_model(PostProcess(2, 20, 0.01, 0.45, 40, 10)), str(path))
    with pytest.raises(DataError, match=r"preprocess\.json .*missing"):
        load_onnx(str(path))
    with pytest.raises(DataError, match="missing.onnx' does not exist"):
        load_onnx(str(tmp_path / "missing.onnx"))
