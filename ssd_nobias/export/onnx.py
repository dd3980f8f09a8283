"""The deploy graph as an ONNX model with per-class NMS, and an ONNX Runtime predictor.

MXNet 1.9's converter for `_contrib_box_nms` ignores `id_index`/`force_suppress=False` and turns
GluonCV's per-class NMS into class-agnostic NMS, and its `_contrib_box_decode` emits Slice pairs
that ONNX Runtime 1.18 fuses into Split nodes of one shared name, an invalid graph. So the
network is converted by `mx.onnx.export_model` only up to the class probabilities, the box
offsets and the anchors, and the rest of GluonCV's post-processing is rebuilt from ONNX
operators with the same semantics:

0. boxes decoded from the offsets and anchors in the order MXNet's box_decode computes them;
1. every (anchor, class) pair with probability > the decoder's threshold is a candidate;
2. the `nms_topk` best candidates over all classes go on (box_nms's `topk`);
3. ONNX NonMaxSuppression, which is per class, removes overlaps within each class;
4. the `post_nms` best survivors are the output, padded with -1: (ids, scores, boxes) as
   (N, post_nms, 1), (N, post_nms, 1), (N, post_nms, 4), like GluonCV's SSD.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np

from ssd_nobias.atomic import replacing
from ssd_nobias.errors import DataError, mxnet_reason, require
from ssd_nobias.onnx_files import load_onnx

OPSET = 13  # the newest mx2onnx converts to


@dataclass(frozen=True)
class PostProcess:
    """GluonCV SSD's post-processing settings, as read from an exported symbol."""

    num_classes: int
    num_anchors: int
    score_thresh: float  # MultiPerClassDecoder: a class is a candidate when its prob is above
    nms_thresh: float
    nms_topk: int
    post_nms: int


@dataclass(frozen=True)
class GraphCut:
    """The tensors of a GluonCV SSD symbol that the ONNX model is built around."""

    logits: str  # (N, anchors, classes + 1), before softmax
    probs: str  # softmax of the logits
    offsets: str  # (N, anchors, 4), before decoding
    anchors: str  # (1, anchors, 4)
    decode: Dict[str, str]  # box_decode's attributes: format, std0..std3, clip
    post: PostProcess


def find_cut(sym: mx.sym.Symbol, input_shape: Tuple[int, ...]) -> GraphCut:
    """Locate the softmax, the box decoder and NMS in a GluonCV SSD symbol, and NMS's settings."""
    nodes = json.loads(sym.tojson())["nodes"]
    by_op: Dict[str, List[dict]] = {}
    for node in nodes:
        by_op.setdefault(node["op"], []).append(node)
    wanted = ("softmax", "_contrib_box_decode", "_contrib_box_nms", "_greater_scalar")
    if any(len(by_op.get(op, [])) != 1 for op in wanted):
        raise DataError("the symbol is not a GluonCV SSD detector: expected one each of "
                        + ", ".join(wanted))
    softmax, decode, nms, greater = (by_op[op][0] for op in wanted)
    nms_index = nodes.index(nms)
    post_nms = 0
    for node in nodes[nms_index + 1:]:
        if node["op"] == "slice_axis" and node["inputs"][0][0] == nms_index:
            post_nms = int(node["attrs"]["end"])
    internals = sym.get_internals()
    names = internals.list_outputs()
    _, shapes, _ = internals.infer_shape(data=input_shape)
    shape = dict(zip(names, shapes))[softmax["name"] + "_output"]
    nms_attrs = nms["attrs"]
    topk = int(nms_attrs.get("topk", -1))
    candidates = shape[1] * (shape[2] - 1)
    topk = candidates if topk <= 0 else min(topk, candidates)
    post = PostProcess(num_classes=shape[2] - 1, num_anchors=shape[1],
                       score_thresh=max(float(greater["attrs"]["scalar"]),
                                        float(nms_attrs.get("valid_thresh", 0))),
                       nms_thresh=float(nms_attrs["overlap_thresh"]), nms_topk=topk,
                       post_nms=min(post_nms, topk) if post_nms > 0 else topk)
    return GraphCut(logits=nodes[softmax["inputs"][0][0]]["name"], probs=softmax["name"],
                    offsets=nodes[decode["inputs"][0][0]]["name"],
                    anchors=nodes[decode["inputs"][1][0]]["name"],
                    decode=dict(decode.get("attrs", {})), post=post)


def decode_nodes(offsets: str, anchors: str, boxes: str, attrs: Dict[str, str]):
    """ONNX nodes and initializers computing `_contrib_box_decode(offsets, anchors)`."""
    from onnx import helper, numpy_helper

    fmt = attrs.get("format", "center")
    if fmt not in ("center", "corner"):
        raise DataError(f"box_decode format '{fmt}' is neither center nor corner")
    std = [float(attrs.get(f"std{i}", 1.0)) for i in range(4)]
    clip = float(attrs.get("clip", -1.0))
    consts = {f"bd_std{i}": np.array(v, np.float32) for i, v in enumerate(std)}
    consts.update(bd_half=np.array(0.5, np.float32), bd_split=np.ones(4, np.int64))
    if clip > 0:
        consts["bd_clip"] = np.array(clip, np.float32)
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]

    def node(op, inputs, outs, **kw):
        return helper.make_node(op, inputs, outs, name=f"bd_{outs[0]}", **kw)

    d = [f"bd_d{i}" for i in range(4)]
    a = [f"bd_a{i}" for i in range(4)]
    nodes = [node("Split", [offsets, "bd_split"], d, axis=2),
             node("Split", [anchors, "bd_split"], a, axis=2)]
    if fmt == "corner":
        nodes += [node("Sub", [a[2], a[0]], ["bd_aw"]), node("Sub", [a[3], a[1]], ["bd_ah"]),
                  node("Mul", ["bd_aw", "bd_half"], ["bd_aw2"]),
                  node("Mul", ["bd_ah", "bd_half"], ["bd_ah2"]),
                  node("Add", [a[0], "bd_aw2"], ["bd_ax"]),
                  node("Add", [a[1], "bd_ah2"], ["bd_ay"])]
        ax, ay, aw, ah = "bd_ax", "bd_ay", "bd_aw", "bd_ah"
    else:
        ax, ay, aw, ah = a
    for i, (centre, size) in enumerate(((ax, aw), (ay, ah))):
        nodes += [node("Mul", [d[i], f"bd_std{i}"], [f"bd_s{i}"]),
                  node("Mul", [f"bd_s{i}", size], [f"bd_m{i}"]),
                  node("Add", [f"bd_m{i}", centre], [f"bd_o{i}"])]
    for i, size in ((2, aw), (3, ah)):
        scaled = f"bd_s{i}"
        nodes.append(node("Mul", [d[i], f"bd_std{i}"], [scaled]))
        if clip > 0:
            nodes.append(node("Min", [scaled, "bd_clip"], [f"bd_c{i}"]))
            scaled = f"bd_c{i}"
        nodes += [node("Exp", [scaled], [f"bd_e{i}"]),
                  node("Mul", [f"bd_e{i}", size], [f"bd_w{i}"]),
                  node("Mul", [f"bd_w{i}", "bd_half"], [f"bd_h{i}"])]
    nodes += [node("Sub", ["bd_o0", "bd_h2"], ["bd_x0"]),
              node("Sub", ["bd_o1", "bd_h3"], ["bd_y0"]),
              node("Add", ["bd_o0", "bd_h2"], ["bd_x1"]),
              node("Add", ["bd_o1", "bd_h3"], ["bd_y1"]),
              node("Concat", ["bd_x0", "bd_y0", "bd_x1", "bd_y1"], [boxes], axis=2)]
    return nodes, inits


def postprocess_nodes(probs: str, boxes: str, post: PostProcess,
                      outputs: Sequence[str] = ("ids", "scores", "bboxes")):
    """ONNX nodes and initializers turning (probs, boxes) into GluonCV's per-class NMS output."""
    from onnx import TensorProto, helper, numpy_helper

    consts = {
        "pp_fg_start": np.array([1], np.int64), "pp_fg_end": np.array([post.num_classes + 1],
                                                                      np.int64),
        "pp_axis1": np.array([1], np.int64), "pp_axis2": np.array([2], np.int64),
        "pp_flat": np.array([0, -1], np.int64), "pp_topk": np.array([post.nms_topk], np.int64),
        "pp_post": np.array([post.post_nms], np.int64),
        "pp_anchors": np.array(post.num_anchors, np.int64),
        "pp_class_range": np.arange(post.num_classes, dtype=np.int64).reshape(1, -1, 1),
        "pp_zero": np.array(0, np.float32), "pp_minus_one": np.array(-1, np.float32),
        "pp_iou": np.array([post.nms_thresh], np.float32),
        "pp_score": np.array([post.score_thresh], np.float32),
        "pp_batch_box": np.array([0, 2], np.int64), "pp_first": np.array([0], np.int64),
        "pp_one": np.array([1], np.int64),
    }
    initializers = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    ids, scores, bboxes = outputs

    def local(name):  # intermediate tensors get a prefix no converted tensor has
        return name if name in (probs, boxes, ids, scores, bboxes) or name.startswith("pp_") \
            else "pp_" + name

    def node(op, inputs, outs, **attrs):
        outs = [local(n) for n in outs]
        return helper.make_node(op, [local(n) for n in inputs], outs, name=f"pp_{outs[0]}",
                                **attrs)

    nodes = [
        # candidates: the best nms_topk (anchor, class) probabilities over all classes
        node("Slice", [probs, "pp_fg_start", "pp_fg_end", "pp_axis2"], ["fg"]),
        node("Transpose", ["fg"], ["fg_t"], perm=[0, 2, 1]),  # (N, C, A)
        node("Reshape", ["fg_t", "pp_flat"], ["fg_flat"]),  # (N, C * A), class-major
        node("TopK", ["fg_flat", "pp_topk"], ["cand_score", "cand_index"], axis=1),
        node("Div", ["cand_index", "pp_anchors"], ["cand_class"]),
        node("Mod", ["cand_index", "pp_anchors"], ["cand_anchor"]),
        node("Unsqueeze", ["cand_anchor", "pp_axis2"], ["cand_anchor3"]),
        node("GatherND", [boxes, "cand_anchor3"], ["cand_boxes"], batch_dims=1),  # (N, K, 4)
        # per-class NMS: each candidate scores only in its own class row
        node("Unsqueeze", ["cand_class", "pp_axis1"], ["cand_class3"]),  # (N, 1, K)
        node("Equal", ["cand_class3", "pp_class_range"], ["cand_onehot"]),  # (N, C, K)
        node("Unsqueeze", ["cand_score", "pp_axis1"], ["cand_score3"]),
        node("Where", ["cand_onehot", "cand_score3", "pp_zero"], ["class_scores"]),
        node("NonMaxSuppression", ["cand_boxes", "class_scores", "pp_topk", "pp_iou",
                                   "pp_score"], ["selected"]),  # (S, 3): batch, class, index
        # a keep mask over the candidates, then the post_nms best kept ones, -1 elsewhere
        node("Gather", ["selected", "pp_batch_box"], ["selected_bk"], axis=1),
        node("Shape", ["selected"], ["selected_shape"]),
        node("Slice", ["selected_shape", "pp_first", "pp_one"], ["selected_count"]),
        node("ConstantOfShape", ["selected_count"], ["selected_ones"],
             value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])),
        node("Shape", ["cand_score"], ["cand_shape"]),
        node("ConstantOfShape", ["cand_shape"], ["keep_zeros"],
             value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])),
        node("ScatterND", ["keep_zeros", "selected_bk", "selected_ones"], ["keep"]),
        node("Cast", ["keep"], ["keep_bool"], to=TensorProto.BOOL),
        node("Where", ["keep_bool", "cand_score", "pp_minus_one"], ["kept_score"]),
        node("TopK", ["kept_score", "pp_post"], ["out_score", "out_index"], axis=1),
        node("Greater", ["out_score", "pp_minus_one"], ["out_valid"]),
        node("GatherElements", ["cand_class", "out_index"], ["out_class"], axis=1),
        node("Cast", ["out_class"], ["out_class_f"], to=TensorProto.FLOAT),
        node("Where", ["out_valid", "out_class_f", "pp_minus_one"], ["out_id"]),
        node("Unsqueeze", ["out_index", "pp_axis2"], ["out_index3"]),
        node("GatherND", ["cand_boxes", "out_index3"], ["out_boxes"], batch_dims=1),
        node("Unsqueeze", ["out_valid", "pp_axis2"], ["out_valid3"]),
        node("Where", ["out_valid3", "out_boxes", "pp_minus_one"], [bboxes]),
        node("Unsqueeze", ["out_id", "pp_axis2"], [ids]),
        node("Unsqueeze", ["out_score", "pp_axis2"], [scores]),
    ]
    return nodes, initializers


def postprocess_model(post: PostProcess):
    """A standalone ONNX model of the post-processing: inputs probs and boxes (for tests)."""
    from onnx import TensorProto, helper

    nodes, inits = postprocess_nodes("probs", "boxes", post)
    inputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT,
                                            ["N", post.num_anchors, post.num_classes + 1]),
              helper.make_tensor_value_info("boxes", TensorProto.FLOAT,
                                            ["N", post.num_anchors, 4])]
    return helper.make_model(helper.make_graph(nodes, "ssd_postprocess", inputs,
                                               _detection_outputs(post), inits),
                             opset_imports=[helper.make_opsetid("", OPSET)])


def _detection_outputs(post: PostProcess):
    from onnx import TensorProto, helper

    return [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", post.post_nms, width])
            for name, width in (("ids", 1), ("scores", 1), ("bboxes", 4))]


def convert(symbol, params, input_shape: Tuple[int, ...], scratch: str, what: str):
    """`mx.onnx.export_model` of a symbol and its params (a dict or a file) with a dynamic
    batch named N; the weights are constants, not graph inputs. `scratch`: a temporary file."""
    import onnx

    try:
        mx.onnx.export_model(symbol, params, in_shapes=[input_shape], in_types=[np.float32],
                             onnx_file_path=scratch, dynamic=True,
                             dynamic_input_shapes=[(None,) + tuple(input_shape[1:])])
        model = onnx.load(scratch)
    except mx.base.MXNetError as err:
        raise DataError(f"mx.onnx cannot convert {what}: {mxnet_reason(err)}") from None
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    kept_inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def export_onnx(prefix: str, onnx_path: str, input_shape: Tuple[int, ...]) -> GraphCut:
    """Convert the deploy graph `prefix`-symbol.json/-0000.params to ONNX with per-class NMS.

    The batch dimension is dynamic; the model's outputs are ids, scores and bboxes. Returns
    where the graph was cut: its tensor names are the ONNX model's too.
    """
    require("onnx", "onnxruntime", extra="onnx", what="the ONNX export")
    import onnx
    from onnx import helper

    sym = mx.sym.load(prefix + "-symbol.json")
    cut = find_cut(sym, input_shape)
    internals = sym.get_internals()
    body = mx.sym.Group([internals[name + "_output"]
                         for name in (cut.probs, cut.offsets, cut.anchors)])
    arrays = {k.split(":", 1)[1]: v for k, v in mx.nd.load(prefix + "-0000.params").items()}
    needed = set(body.list_arguments()) | set(body.list_auxiliary_states())
    model = convert(body, {k: v for k, v in arrays.items() if k in needed}, input_shape,
                    onnx_path + ".body", prefix)
    graph = model.graph
    for nodes, inits in (decode_nodes(cut.offsets, cut.anchors, "bd_boxes", cut.decode),
                         postprocess_nodes(cut.probs, "bd_boxes", cut.post)):
        graph.node.extend(nodes)
        graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.extend(_detection_outputs(cut.post))
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    model.producer_name = "ssd_nobias"
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    with replacing(onnx_path) as tmp:
        onnx.save(model, tmp)
    return cut


def conv_biases(onnx_path: str) -> Dict[str, Optional[float]]:
    """Per Conv node (by its weight's name): max |bias|, or None when it has no bias input."""
    from onnx import numpy_helper

    model = load_onnx(onnx_path)
    values = {init.name: init for init in model.graph.initializer}
    biases = {}
    for node in model.graph.node:
        if node.op_type == "Conv":
            bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
            biases[node.input[1]] = None if bias is None else \
                float(np.abs(numpy_helper.to_array(values[bias])).max())
    return biases


def op_counts(onnx_path: str) -> Dict[str, int]:
    """How many nodes of each operator type the ONNX model has."""
    counts: Dict[str, int] = {}
    for node in load_onnx(onnx_path).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
