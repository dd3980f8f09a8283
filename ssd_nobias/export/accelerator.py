"""The split export: an accelerator graph of weight-only convolutions and ReLU, from the
normalized input to the 12 raw head outputs, and the host part that turns those outputs into
detections. Written beside the deploy graph, in `<export>/accelerator/`:

    accelerator-symbol.json, accelerator-0000.params   the graph for MXNet
    accelerator.onnx                                   the same graph in ONNX
    host.json, host.npz                                the host part for NumPy (runtime/host.py)
    host.onnx                                          the host part for ONNX Runtime
    accelerator.int8.onnx, host.int8.onnx              with --formats int8: the INT8 graph and the
                                                       host part it needs (channel scales)

The heads' biases (model.heads_bias) leave the graph: the host adds them to the raw outputs,
so every convolution the accelerator runs has a weight and no bias.
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple, Sequence, Tuple

import mxnet as mx
import numpy as np
from gluoncv.model_zoo.ssd import SSD
from mxnet import gluon
from mxnet.gluon import nn

from ssd_nobias.atomic import replacing, write_json
from ssd_nobias.errors import DataError
from ssd_nobias.export.onnx import (OPSET, GraphCut, PostProcess, convert, decode_nodes,
                                    find_cut, postprocess_nodes)
from ssd_nobias.runtime.accelerator import FLOAT_ONNX, NAME
from ssd_nobias.runtime.host import HostPart, HostSpec, head_names



class AcceleratorNet(nn.HybridBlock):
    """A folded SSD's features and its 12 predictor convolutions without their biases:
    input -> (cls0..cls5, box0..box5), each NCHW as the convolution leaves it."""

    def __init__(self, folded: SSD, **kwargs):
        super().__init__(**kwargs)
        predictors = [h.predictor for h in list(folded.class_predictors) +
                      list(folded.box_predictors)]
        with self.name_scope():
            self.features = folded.features
            self.heads = nn.HybridSequential()
            for old in predictors:
                self.heads.add(nn.Conv2D(old._channels, old._kwargs["kernel"],
                                         padding=old._kwargs["pad"], use_bias=False,
                                         in_channels=old.weight.shape[1]))
        ctx = folded.features.collect_params().list_ctx()
        self.heads.initialize(ctx=ctx)
        for new, old in zip(self.heads, predictors):
            new.weight.set_data(old.weight.data())
        self.biases = [None if old.bias is None else old.bias.data().asnumpy()
                       for old in predictors]

    def hybrid_forward(self, F, x):
        features = self.features(x)
        return tuple(head(features[i % len(features)]) for i, head in enumerate(self.heads))


def deploy_anchors(prefix: str, cut: GraphCut, size: int) -> np.ndarray:
    """The (anchors, 4) center-form anchors the deploy graph decodes against."""
    sym = mx.sym.load(prefix + "-symbol.json").get_internals()[cut.anchors + "_output"]
    block = gluon.SymbolBlock(sym, mx.sym.var("data", dtype="float32"))  # typed: no warning
    block.collect_params().load(prefix + "-0000.params", ignore_extra=True,
                                allow_missing=True)
    return block(mx.nd.zeros((1, 3, size, size))).asnumpy().reshape(-1, 4)


def host_part(net: AcceleratorNet, cut: GraphCut, anchors: np.ndarray) -> HostPart:
    """The host part of `net`, with the deploy graph's decoding and NMS settings."""
    if cut.decode.get("format", "center") != "center":
        raise DataError("the host part decodes center-form anchors; the deploy graph's "
                        f"box_decode uses '{cut.decode['format']}'")
    post = cut.post
    spec = HostSpec(num_classes=post.num_classes, heads=len(net.heads) // 2,
                    decode_std=tuple(float(cut.decode.get(f"std{i}", 1.0)) for i in range(4)),
                    decode_clip=float(cut.decode.get("clip", -1.0)),
                    score_thresh=post.score_thresh, nms_thresh=post.nms_thresh,
                    nms_topk=post.nms_topk, post_nms=post.post_nms)
    return HostPart(spec, anchors, net.biases)


def export_symbol(net: AcceleratorNet, x: mx.nd.NDArray, folder: str) -> str:
    """Write accelerator-symbol.json/-0000.params; return the prefix."""
    net.hybridize(static_alloc=True)
    net(x)
    prefix = os.path.join(folder, NAME)
    net.export(prefix, epoch=0)
    return prefix


def export_onnx(prefix: str, onnx_path: str, size: int) -> None:
    """Convert the accelerator symbol to ONNX (dynamic batch), outputs named cls0.., box0.."""
    import onnx

    model = convert(prefix + "-symbol.json", prefix + "-0000.params", (1, 3, size, size),
                    onnx_path + ".tmp-convert", prefix)
    graph = model.graph
    names = head_names(len(graph.output) // 2)
    renamed = {out.name: new for out, new in zip(graph.output, names)}
    for node in graph.node:
        node.output[:] = [renamed.get(o, o) for o in node.output]
        if not node.name:
            node.name = f"{node.op_type}_{node.output[0]}"
    for out, new in zip(graph.output, names):
        out.name = new
        out.type.tensor_type.shape.dim[0].dim_param = "N"
    del model.opset_import[:]
    model.opset_import.extend([onnx.helper.make_opsetid("", OPSET)])
    model.producer_name = "ssd_nobias"
    onnx.checker.check_model(model)
    with replacing(onnx_path) as tmp:
        onnx.save(model, tmp)


def deploy_prefix(export_dir: str, model_name: str) -> str:
    """The deploy graph's file prefix in `export_dir`; DataError if export_deploy has not
    written it (an accelerator graph goes beside one: it takes its anchors and decoding)."""
    prefix = os.path.join(export_dir, model_name)
    if not os.path.isfile(prefix + "-symbol.json"):
        raise DataError(f"{prefix}-symbol.json is missing: the accelerator export goes beside "
                        f"a deploy graph (export it first)")
    return prefix


class FloatPair(NamedTuple):
    """What write_float_pair wrote: the accelerator net, its host part, the graph's MXNet
    prefix and its ONNX file."""
    net: AcceleratorNet
    host: HostPart
    prefix: str
    onnx: str


def write_float_pair(folded: SSD, x: mx.nd.NDArray, export_dir: str, folder: str,
                     model_name: str, size: int) -> FloatPair:
    """The float32 accelerator graph of a folded SSD (MXNet symbol and ONNX) and its host part
    (the deploy graph's anchors, decoding and NMS), written to `folder` with the export's
    preprocess.json: the float32 pair every INT8 variant is quantized from."""
    prefix_in = deploy_prefix(export_dir, model_name)
    cut = find_cut(mx.sym.load(prefix_in + "-symbol.json"), (1, 3, size, size))
    os.makedirs(folder, exist_ok=True)
    net = AcceleratorNet(folded)
    prefix = export_symbol(net, x, folder)
    host = host_part(net, cut, deploy_anchors(prefix_in, cut, size))
    host.save(folder)
    with open(os.path.join(export_dir, "preprocess.json")) as f:
        write_json(os.path.join(folder, "preprocess.json"), json.load(f))
    onnx_path = os.path.join(folder, FLOAT_ONNX)
    export_onnx(prefix, onnx_path, size)
    return FloatPair(net, host, prefix, onnx_path)


def host_onnx(host: HostPart, path: str, head_shapes: Sequence[Tuple[int, ...]],
              int8: bool = False) -> None:
    """The host part as an ONNX model: inputs cls0.., box0.. -> ids, scores, bboxes; with
    `int8`, for the INT8 graph: each input first multiplied by its channel scales."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec, names = host.spec, head_names(host.spec.heads)
    nodes, inits = [], [numpy_helper.from_array(host.anchors.reshape(1, -1, 4), "h_anchors"),
                        numpy_helper.from_array(np.array([0, -1, spec.num_classes + 1],
                                                         np.int64), "h_cls_shape"),
                        numpy_helper.from_array(np.array([0, -1, 4], np.int64), "h_box_shape")]
    flat = {"cls": [], "box": []}
    for i, name in enumerate(names):
        tensor = name
        if int8:
            inits.append(numpy_helper.from_array(host.channel_scales[i], f"h_scale_{name}"))
            nodes.append(helper.make_node("Mul", [name, f"h_scale_{name}"], [f"h_s_{name}"],
                                          name=f"h_mul_{name}"))
            tensor = f"h_s_{name}"
        if host.biases[i] is not None:
            inits.append(numpy_helper.from_array(host.biases[i].astype(np.float32),
                                                 f"h_bias_{name}"))
            nodes.append(helper.make_node("Add", [tensor, f"h_bias_{name}"], [f"h_b_{name}"],
                                          name=f"h_add_{name}"))
            tensor = f"h_b_{name}"
        nodes.append(helper.make_node("Transpose", [tensor], [f"h_t_{name}"],
                                      name=f"h_transpose_{name}", perm=[0, 2, 3, 1]))
        nodes.append(helper.make_node("Flatten", [f"h_t_{name}"], [f"h_f_{name}"],
                                      name=f"h_flatten_{name}", axis=1))
        flat[name[:3]].append(f"h_f_{name}")
    nodes += [helper.make_node("Concat", flat["cls"], ["h_cls"], name="h_concat_cls", axis=1),
              helper.make_node("Concat", flat["box"], ["h_box"], name="h_concat_box", axis=1),
              helper.make_node("Reshape", ["h_cls", "h_cls_shape"], ["h_logits"],
                               name="h_logits"),
              helper.make_node("Reshape", ["h_box", "h_box_shape"], ["h_offsets"],
                               name="h_offsets"),
              helper.make_node("Softmax", ["h_logits"], ["h_probs"], name="h_softmax",
                               axis=-1)]
    decode = {f"std{i}": str(v) for i, v in enumerate(spec.decode_std)}
    decode.update(format="center", clip=str(spec.decode_clip))
    post = PostProcess(spec.num_classes, len(host.anchors), spec.score_thresh,
                       spec.nms_thresh, spec.nms_topk, spec.post_nms)
    for more, more_inits in (decode_nodes("h_offsets", "h_anchors", "h_boxes", decode),
                             postprocess_nodes("h_probs", "h_boxes", post)):
        nodes += more
        inits += more_inits
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N"] + list(shape[1:]))
              for name, shape in zip(names, head_shapes)]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                             ["N", spec.post_nms, width])
               for name, width in (("ids", 1), ("scores", 1), ("bboxes", 4))]
    model = helper.make_model(helper.make_graph(nodes, "ssd_host", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ssd_nobias")
    onnx.checker.check_model(model)
    with replacing(path) as tmp:
        onnx.save(model, tmp)
