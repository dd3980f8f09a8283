"""Deployment export: fold every norm into its convolution and write a graph with no BatchNorm.

A conv + NoBiasBatchNorm pair folds into one Convolution with `no_bias=True` and weight
`w * gamma / sqrt(running_var + eps)`; a pair with stock BatchNorm folds into a convolution with
bias `beta - gamma * running_mean / sqrt(running_var + eps)`. Anchors, box decoding and NMS stay
in the graph, which outputs (ids, scores, boxes) like any GluonCV detector and loads with
`mx.gluon.SymbolBlock.imports` alone.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from gluoncv.model_zoo.ssd import SSD
from mxnet import autograd, gluon
from mxnet.gluon import nn

from ssd_nobias.atomic import write_json
from ssd_nobias.config import save_config
from ssd_nobias.devices import inference_device
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.export.inputs import parity_inputs
from ssd_nobias.export.staging import CONFIG
from ssd_nobias.errors import DataError, UserError, mxnet_reason
from ssd_nobias.model.ssd import (ConvNorm, MobileNetSSDFeatures, activate,
                                  bias_report, build_model)
from ssd_nobias.model.norm import NoBiasBatchNorm
from ssd_nobias.runtime.predictors import load_deploy, load_trained, trained_classes

PARITY_RTOL = 1e-4  # of the output's magnitude: raw predictor outputs, deploy against trained


class ShiftError(UserError):
    """Norm layers with a shift where the config asks for no bias: folding needs a bias."""


class ParityError(UserError):
    """The exported model's outputs differ from the trained model's by more than allowed."""


def fold_conv_norm(pair: ConvNorm) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(weight, bias) of the one convolution equal to `pair` in inference; bias None if none."""
    norm = pair.norm
    weight = pair.conv.deploy_weight().asnumpy().astype(np.float64)
    var = norm.running_var.data().asnumpy().astype(np.float64)
    gamma = norm.gamma.data().asnumpy().astype(np.float64)
    if norm._kwargs["fix_gamma"]:
        gamma = np.ones_like(gamma)
    scale = gamma / np.sqrt(var + norm._kwargs["eps"])
    folded = (weight * scale[:, None, None, None]).astype(np.float32)
    if isinstance(norm, NoBiasBatchNorm):
        return folded, None
    mean = norm.running_mean.data().asnumpy().astype(np.float64)
    beta = norm.beta.data().asnumpy().astype(np.float64)  # zeros when center=False
    return folded, (beta - mean * scale).astype(np.float32)


class FoldedConv(nn.HybridBlock):
    """A deploy unit: one convolution with a norm folded into it, then the unit's activation."""

    def __init__(self, pair: ConvNorm, weight: np.ndarray, bias: Optional[np.ndarray],
                 **kwargs):
        super().__init__(**kwargs)
        self.activation, self.slope = pair.activation, pair.slope
        k = pair.conv._kwargs
        with self.name_scope():
            self.conv = nn.Conv2D(k["num_filter"], k["kernel"], strides=k["stride"],
                                  padding=k["pad"], groups=k["num_group"],
                                  use_bias=bias is not None,
                                  in_channels=weight.shape[1] * k["num_group"])
        self.conv.initialize(ctx=mx.cpu())
        self.conv.weight.set_data(mx.nd.array(weight))
        if bias is not None:
            self.conv.bias.set_data(mx.nd.array(bias))

    def hybrid_forward(self, F, x):
        return activate(F, self.conv(x), self.activation, self.slope)  # forms MKLDNN fuses


class FoldedFeatures(MobileNetSSDFeatures):
    """MobileNetSSDFeatures with each conv+norm pair replaced by its FoldedConv, same names."""

    def __init__(self, features: MobileNetSSDFeatures):  # pylint: disable=super-init-not-called
        nn.HybridBlock.__init__(self, prefix=features.prefix)
        self._outputs = features._outputs
        for name, pair in features.pairs():
            weight, bias = fold_conv_norm(pair)
            self._add(name, FoldedConv(pair, weight, bias, prefix=pair.prefix))


def fold_ssd(net: SSD, ctx: Sequence[mx.Context]) -> SSD:
    """Fold `net`'s feature extractor in place (predictors, anchors and NMS stay); return it."""
    net.features = FoldedFeatures(net.features)
    net.features.collect_params().reset_ctx(list(ctx))
    return net


def raw_outputs(net: SSD, x: mx.nd.NDArray) -> Tuple[np.ndarray, np.ndarray]:
    """(class logits, box offsets) of an SSD in inference mode, before decoding and NMS."""
    with autograd.predict_mode():
        features = net.features(x)
        cls = [cp(f).transpose((0, 2, 3, 1)).flatten() for f, cp in
               zip(features, net.class_predictors)]
        box = [bp(f).transpose((0, 2, 3, 1)).flatten() for f, bp in
               zip(features, net.box_predictors)]
    return (mx.nd.concat(*cls, dim=1).asnumpy(), mx.nd.concat(*box, dim=1).asnumpy())


def deploy_raw_outputs(prefix: str, x: mx.nd.NDArray, num_classes: int
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """(class logits, box offsets) read from inside an exported graph, before decoding and NMS.

    They are the graph's (N, anchors, classes + 1) and (N, anchors, 4) Reshape outputs with the
    input's batch size N > 1 (the anchors have batch 1).
    """
    assert x.shape[0] > 1, "a batch of one cannot tell predictions from anchors"
    sym = mx.sym.load(prefix + "-symbol.json")
    internals = sym.get_internals()
    _, shapes, _ = internals.infer_shape(data=x.shape)
    ops = {n["name"]: n["op"] for n in json.loads(sym.tojson())["nodes"]}
    found = {}
    for name, shape in zip(internals.list_outputs(), shapes):
        node = name[: -len("_output")]
        if ops.get(node) == "Reshape" and len(shape) == 3 and shape[0] == x.shape[0]:
            found.setdefault(shape[2], internals[name])
    if set(found) != {num_classes + 1, 4}:
        raise ParityError(f"{prefix}-symbol.json: cannot find the raw predictor outputs")
    block = gluon.SymbolBlock(mx.sym.Group([found[num_classes + 1], found[4]]),
                              mx.sym.var("data", dtype="float32"))
    block.collect_params().load(prefix + "-0000.params", ctx=x.context, ignore_extra=True)
    cls, box = block(x)
    return cls.reshape((0, -1)).asnumpy(), box.reshape((0, -1)).asnumpy()


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| over max |want|, on finite entries; inf unless the rest match exactly.

    An untrained model's box decoding can overflow to inf, the same in both.
    """
    finite = np.isfinite(want)
    if not np.array_equal(got[~finite], want[~finite], equal_nan=True) or \
            not np.isfinite(got[finite]).all():
        return float("inf")
    if not finite.any():
        return 0.0
    got, want = got[finite], want[finite]
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


def norm_shifts(params_path: str) -> Dict[str, float]:
    """Per norm layer of a params file: max |beta - gamma * mean / sqrt(var + eps)|, the bias
    the layer would leave once folded (eps 1e-5, Gluon's default)."""
    try:
        arrays = {k: v.asnumpy() for k, v in mx.nd.load(params_path).items()}
    except mx.base.MXNetError as err:
        raise DataError(f"cannot read '{params_path}': {mxnet_reason(err)}") from None
    shifts = {}
    for key, mean in arrays.items():
        if key.endswith(".running_mean"):
            layer = key[: -len(".running_mean")]
            gamma = arrays.get(layer + ".gamma", np.ones_like(mean))
            beta = arrays.get(layer + ".beta", np.zeros_like(mean))
            var = arrays[layer + ".running_var"]
            shifts[layer] = float(np.abs(beta - gamma * mean / np.sqrt(var + 1e-5)).max())
    return shifts


def _nobias_layers(net: SSD) -> List[str]:
    return [f"features.{name}.norm" for name, pair in net.features.pairs()
            if isinstance(pair.norm, NoBiasBatchNorm)]


def export_deploy(cfg, params_path: str, out_dir: str, onnx: bool = False,
                  device: Optional[str] = None, sample_images: Optional[str] = None) -> dict:
    """Fold the trained model, write the deploy graph, preprocessing and report; check parity.

    With `onnx`, also write `<model>.onnx` and check it with ONNX Runtime against the deploy
    graph: no BatchNormalization node, the same convolutions without bias, the same raw outputs.
    `device` ('cpu', 'gpu0'): where the model is folded and checked (devices.inference_device).
    The dataset is not needed: the class names come from the checkpoint's sidecar, and parity
    is checked on `sample_images` (a folder, glob or image), else the val images when the
    dataset is here, else seeded noise (export/inputs.py); the report's parity says which.

    Params whose norm layers have a shift (beta or running mean, i.e. trained with stock
    BatchNorm) where the config asks for NoBiasBatchNorm cannot be folded without a bias:
    ShiftError names them.
    Raises ParityError (after writing the report) when the deploy graph's raw class and box
    outputs differ from the model's by more than PARITY_RTOL of their magnitude.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"output '{out_dir}' exists and is not a directory")
    if not os.path.isfile(params_path):
        raise DataError(f"params file '{params_path}' does not exist")
    ctx = inference_device(cfg.train.ctx, device)
    shifts = norm_shifts(params_path)
    classes = trained_classes(cfg, params_path)
    nobias = _nobias_layers(build_model(cfg, classes))
    shifted = {layer: shifts[layer] for layer in nobias if shifts.get(layer, 0.0) > 0}
    if shifted:
        listing = ", ".join(f"{k} {v:.3g}" for k, v in list(shifted.items())[:6])
        raise ShiftError(f"{params_path}: {len(shifted)} norm layers the config makes bias-free "
                         f"were trained with a shift (max |shift| per layer: {listing}"
                         f"{', ...' if len(shifted) > 6 else ''}); folding them needs a bias. "
                         f"Train with model.norm=nobias, or export with the norm it was "
                         f"trained with (model.norm=batchnorm) and keep the biases")
    os.makedirs(out_dir, exist_ok=True)
    net, classes = load_trained(cfg, params_path, ctx, classes=classes)
    preprocess = Preprocess.from_config(cfg)
    x, source = parity_inputs(cfg, sample_images)
    x = x.as_in_context(ctx[0])
    trained_cls, trained_box = raw_outputs(net, x)
    trained_det = [a.asnumpy() for a in net(x)]

    modes = {f"features.{name}.conv": pair.conv.mode for name, pair in net.features.pairs()}
    folded = fold_ssd(net, ctx)
    folded.hybridize(static_alloc=True)
    folded(x)
    prefix = os.path.join(out_dir, cfg.model.name)
    folded.export(prefix, epoch=0)

    preprocess.save(out_dir, classes)
    save_config(cfg, os.path.join(out_dir, CONFIG))  # eval of the export needs no --config
    deploy, _ = load_deploy(out_dir, ctx)
    deploy_det = [a.asnumpy() for a in deploy(x)]
    deploy_cls, deploy_box = deploy_raw_outputs(prefix, x, len(classes))
    # each folded conv holds its effective weight; 'weights' says how it was trained
    layers = [dict(vars(r), weights=modes.get(r.name, r.weights)) for r in bias_report(folded)]
    parity = {"images": int(x.shape[0]), "inputs": source,
              "class_logits": relative_error(deploy_cls, trained_cls),
              "box_offsets": relative_error(deploy_box, trained_box),
              # after NMS, for information: near-ties may reorder or swap detections
              "scores": relative_error(deploy_det[1], trained_det[1]),
              "same_detections": bool(np.array_equal(deploy_det[0], trained_det[0]) and
                                      relative_error(deploy_det[2], trained_det[2]) <= 1e-4)}
    report = {"model": cfg.model.name, "params": params_path, "symbol": prefix + "-symbol.json",
              "deploy_params": prefix + "-0000.params", "layers": layers,
              "bias_free_layers": sum(r["bias_free"] for r in layers),
              "parity": parity, "parity_rtol": PARITY_RTOL}
    if onnx:
        report["onnx"] = check_onnx(prefix, x, (deploy_cls, deploy_box), deploy_det)
    write_json(os.path.join(out_dir, "export_report.json"), report)
    worst = max(parity["class_logits"], parity["box_offsets"])
    if worst > PARITY_RTOL:
        raise ParityError(f"the deploy graph's raw outputs differ from the trained model's by "
                          f"{worst:.3g} of their magnitude (allowed {PARITY_RTOL:g}); see "
                          f"{out_dir}/export_report.json")
    if onnx:
        _raise_onnx_failures(report["onnx"], out_dir)
    return report


def add_to_report(export_dir: str, key: str, entry: Dict) -> None:
    """Set `key` of export_dir/export_report.json to `entry` (the file is created if need be)."""
    path = os.path.join(export_dir, "export_report.json")
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError):
        report = {}
    report[key] = entry
    write_json(path, report)


def check_onnx(prefix: str, x: mx.nd.NDArray, deploy_raw: Tuple[np.ndarray, np.ndarray],
               deploy_det: List[np.ndarray]) -> dict:
    """Write `prefix`.onnx and compare it with the deploy graph: nodes, biases, outputs."""
    from ssd_nobias.export import onnx as onnx_model
    from ssd_nobias.runtime.onnxrt import session

    path = prefix + ".onnx"
    cut = onnx_model.export_onnx(prefix, path, (1,) + x.shape[1:])
    sess = session(path, extra_outputs=[cut.logits, cut.offsets])
    ids, scores, boxes, logits, offsets = sess.run(
        ["ids", "scores", "bboxes", cut.logits, cut.offsets], {"data": x.asnumpy()})
    deploy_bias = {k.split(":", 1)[1][: -len("bias")] for k in
                   mx.nd.load(prefix + "-0000.params") if k.endswith("_bias")}
    convs = onnx_model.conv_biases(path)
    mismatched = sorted(w for w, b in convs.items()
                        if (b is not None) != (w[: -len("weight")] in deploy_bias))
    ops = onnx_model.op_counts(path)
    return {"file": path, "batchnorm_nodes": ops.get("BatchNormalization", 0),
            "conv_nodes": len(convs),
            "conv_nodes_without_bias": sum(b is None for b in convs.values()),
            "bias_differs_from_deploy": mismatched,
            "parity": {"images": int(x.shape[0]),
                       "class_logits": relative_error(logits.reshape(len(logits), -1),
                                                      deploy_raw[0]),
                       "box_offsets": relative_error(offsets.reshape(len(offsets), -1),
                                                     deploy_raw[1]),
                       "same_detections": bool(
                           np.array_equal(ids, deploy_det[0]) and
                           relative_error(scores, deploy_det[1]) <= PARITY_RTOL and
                           relative_error(boxes, deploy_det[2]) <= PARITY_RTOL)}}


def _raise_onnx_failures(check: dict, out_dir: str) -> None:
    problems = []
    if check["batchnorm_nodes"]:
        problems.append(f"{check['batchnorm_nodes']} BatchNormalization nodes")
    if check["bias_differs_from_deploy"]:
        problems.append(f"Conv nodes whose bias differs from the deploy graph's: "
                        f"{', '.join(check['bias_differs_from_deploy'][:4])}")
    worst = max(check["parity"]["class_logits"], check["parity"]["box_offsets"])
    if worst > PARITY_RTOL:
        problems.append(f"raw outputs differ from the deploy graph's by {worst:.3g} of their "
                        f"magnitude (allowed {PARITY_RTOL:g})")
    if problems:
        raise ParityError(f"the ONNX model {check['file']} fails its checks: "
                          f"{'; '.join(problems)}; see {out_dir}/export_report.json")


def format_report(report: Dict, layers: bool = False) -> str:
    """The bias count and parity figures for the console; with `layers`, every convolution's
    row first (export_report.json always holds them)."""
    rows = []
    if layers:
        rows.append(f"{'layer':44s} {'bias':5s} {'max |bias|':>10s}")
        for r in report["layers"]:
            bias = "-" if r["max_abs_bias"] is None else f"{r['max_abs_bias']:.3g}"
            rows.append(f"{r['name']:44s} {'no' if r['bias_free'] else 'YES':5s} {bias:>10s}")
    p = report["parity"]
    biased = [r["name"] for r in report["layers"] if not r["bias_free"]]
    named = ", ".join(biased[:3]) + (f" and {len(biased) - 3} more" if len(biased) > 3 else "")
    rows.append(f"{report['bias_free_layers']} of {len(report['layers'])} convolutions have no "
                f"bias" + (f"; with a bias: {named}" if biased else "") +
                ("" if layers else " (--layers lists every one)"))
    rows.append(f"parity on {p.get('inputs', str(p['images']) + ' images')}, deploy graph "
                f"against the trained model (max error over max magnitude): class logits {p['class_logits']:.2g}, box "
                f"offsets {p['box_offsets']:.2g}; same detections after NMS: "
                f"{p['same_detections']}")
    onnx = report.get("onnx")
    if onnx:
        q = onnx["parity"]
        rows.append(f"ONNX: {onnx['conv_nodes_without_bias']} of {onnx['conv_nodes']} Conv nodes "
                    f"without bias, {onnx['batchnorm_nodes']} BatchNormalization nodes; ONNX "
                    f"Runtime against the deploy graph: class logits {q['class_logits']:.2g}, "
                    f"box offsets {q['box_offsets']:.2g}; same detections after NMS: "
                    f"{q['same_detections']}")
    return "\n".join(rows)

