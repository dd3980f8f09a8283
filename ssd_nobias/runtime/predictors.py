"""Model files turned into predictors: a training checkpoint, an exported deploy folder or an
ONNX model, each run like a GluonCV detector (an image batch in, (ids, scores, boxes) out).

evaluate.py, export.py and the benchmarks load models through this module only.
"""
from __future__ import annotations

import json
import os
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
import yaml
from mxnet import gluon

from ssd_nobias.model.checkpoint import first_non_finite, read_meta, sidecar_path
from ssd_nobias.config import loads_config
from ssd_nobias.devices import contexts, inference_contexts
from ssd_nobias.data.datasets import dataset_classes
from ssd_nobias.runtime.runtimes import INTEGER_RUNTIMES, RUNTIMES
from ssd_nobias.runtime.accelerator import FLOAT_ONNX, INT8_ONNX, OnnxAccelerator, is_int8_graph
from ssd_nobias.runtime.host import HostPart
from ssd_nobias.runtime.integer import IntegerAccelerator
from ssd_nobias.runtime.openvino import OpenVinoAccelerator, OpenVinoGraph
from ssd_nobias.errors import DataError, mxnet_reason
from ssd_nobias.model.ssd import build_model, preset, with_anchor_sizes
from ssd_nobias.runtime.onnxrt import session

Predictor = Callable[[mx.nd.NDArray], Tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]]


class LoadedModel(NamedTuple):
    """A predictor, the class names its ids index, and the contexts its inputs go to."""

    predictor: Predictor
    classes: List[str]
    ctx: List[mx.Context]


def net_predictor(net: gluon.HybridBlock) -> Predictor:
    """Inference with a GluonCV SSD (re-hybridized: its train/test branch is traced once)."""
    net.hybridize(static_alloc=True)
    return net


def trained_classes(cfg, params_path: str) -> List[str]:
    """The class names a checkpoint was trained on: its sidecar's, else the config's dataset's.

    Raises:
        DataError when there is neither (a checkpoint without its sidecar, the dataset not on
        this machine).
    """
    meta = read_meta(params_path)
    if meta and meta.get("classes"):
        return list(meta["classes"])
    try:
        return dataset_classes(cfg)
    except DataError as err:
        raise DataError(f"{params_path} has no sidecar that records its classes, and the "
                        f"dataset's cannot be read: {err}") from None


def load_trained(cfg, params_path: str, ctx: Sequence[mx.Context], ignore_extra: bool = False,
                 classes: Optional[Sequence[str]] = None) -> Tuple[gluon.HybridBlock, List[str]]:
    """The config's model with a training .params file loaded, and its class names: those its
    sidecar records (the dataset is not read), else the config's dataset's. `classes`: the
    dataset's, when the caller has them (an evaluation), checked against the recorded ones."""
    if not os.path.isfile(params_path):
        raise DataError(f"params file '{params_path}' does not exist")
    meta = read_meta(params_path)
    recorded = meta.get("classes") if meta else None
    if classes is not None and recorded not in (None, list(classes)):
        raise DataError(f"{params_path} was trained on classes {recorded}, the config's "
                        f"dataset has {list(classes)}")
    classes = list(classes) if classes is not None else recorded or dataset_classes(cfg)
    _check_anchor_sizes(cfg, params_path, meta)
    net = build_model(cfg, classes)
    try:
        net.load_parameters(params_path, ctx=list(ctx), ignore_extra=ignore_extra)
    except (AssertionError, mx.base.MXNetError) as err:
        raise DataError(f"{params_path} does not fit model {cfg.model.name} "
                        f"(norm {cfg.model.norm}): {mxnet_reason(err)}") from None
    bad = first_non_finite(net)
    if bad is not None:
        raise DataError(f"{params_path}: {bad} holds NaN or infinity (a training that "
                        f"diverged); it cannot be evaluated or exported")
    return net, classes


LEGACY_300_SIZES = [21.0, 45.0, 99.0, 153.0, 207.0, 261.0, 315.0]  # before SSD's scales


def _check_anchor_sizes(cfg, params_path: str, meta: Optional[dict]) -> None:
    """The anchors a checkpoint was trained with (its recorded config) against the config's:
    the same weights decoded against other anchors give wrong boxes without any error."""
    if not meta or "config" not in meta:
        return  # no record (not written by train_ssd.py): nothing to check against
    trained = (yaml.safe_load(meta["config"]) or {}).get("model", {})
    want = [float(s) for s in with_anchor_sizes(cfg).model.anchor_sizes]
    if "anchor_sizes" in trained:
        got = [float(s) for s in trained["anchor_sizes"] or preset(cfg.model.name).sizes]
    elif cfg.model.name.startswith("ssd_300"):
        got = LEGACY_300_SIZES  # trained before sizes were recorded: the 300 preset then
    else:
        return
    if got != want:
        def listed(sizes):
            return "[" + ",".join(f"{s:g}" for s in sizes) + "]"
        raise DataError(f"{params_path} was trained with anchor sizes {listed(got)}, the config "
                        f"gives {listed(want)}: set model.anchor_sizes={listed(got)}")


def export_classes(folder: str) -> List[str]:
    """The class names export_ssd.py wrote to preprocess.json in `folder`."""
    path = os.path.join(folder, "preprocess.json")
    try:
        with open(path) as f:
            return json.load(f)["classes"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path} (written by `ssd-nobias export`) is missing or unreadable: "
                        f"{err}") from None


def import_graph(prefix: str, ctx) -> gluon.SymbolBlock:
    """<prefix>-symbol.json with <prefix>-0000.params, as SymbolBlock.imports loads them, but
    with a float32 input declared: imports' untyped input makes MXNet warn "Cannot decide
    type" on every load."""
    block = gluon.SymbolBlock(mx.sym.load(prefix + "-symbol.json"),
                              mx.sym.var("data", dtype="float32"))
    block.collect_params().load(prefix + "-0000.params", ctx=ctx, cast_dtype=True,
                                dtype_source="saved")
    return block


def load_deploy(deploy_dir: str, ctx: Sequence[mx.Context]
                ) -> Tuple[gluon.SymbolBlock, List[str]]:
    """The exported graph as a SymbolBlock, and its class names from preprocess.json."""
    symbols = [f for f in os.listdir(deploy_dir) if f.endswith("-symbol.json")] \
        if os.path.isdir(deploy_dir) else []
    if len(symbols) != 1:
        raise DataError(f"'{deploy_dir}' should hold one <model>-symbol.json written by "
                        f"`ssd-nobias export`, found {len(symbols)}")
    prefix = os.path.join(deploy_dir, symbols[0][: -len("-symbol.json")])
    classes = export_classes(deploy_dir)
    try:
        block = import_graph(prefix, ctx)
    except (mx.base.MXNetError, AssertionError, OSError) as err:
        raise DataError(f"cannot load the deploy graph {prefix}: "
                        f"{mxnet_reason(err)}") from None
    block.hybridize(static_alloc=True)
    return block, classes


class OnnxPredictor:
    """Runs an exported ONNX model like a GluonCV detector: NDArray in, (ids, scores, boxes) out;
    in ONNX Runtime or OpenVINO (`runtime`)."""

    def __init__(self, onnx_path: str, runtime: str = "onnxruntime"):
        if runtime == "openvino":
            graph = OpenVinoGraph(onnx_path)
            order = [graph.output_names.index(n) for n in ("ids", "scores", "bboxes")]
            self.run = lambda x: [graph.run({"data": x})[k] for k in order]
        elif runtime == "onnxruntime":
            sess = session(onnx_path)
            name = sess.get_inputs()[0].name
            self.run = lambda x: sess.run(["ids", "scores", "bboxes"], {name: x})
        else:
            raise DataError(f"--runtime {runtime} runs an INT8 accelerator graph, not the whole "
                            f"model's ONNX file")

    def __call__(self, x: mx.nd.NDArray):
        outs = self.run(x.asnumpy().astype(np.float32))
        return tuple(mx.nd.array(o, ctx=x.context) for o in outs)


def load_onnx(onnx_path: str, runtime: str = "onnxruntime") -> Tuple[OnnxPredictor, List[str]]:
    """The ONNX model as a predictor, and its class names from preprocess.json beside it."""
    predictor = OnnxPredictor(onnx_path, runtime)
    return predictor, export_classes(os.path.dirname(os.path.abspath(onnx_path)))


class SplitPredictor:
    """An accelerator graph (float32 or INT8, in ONNX Runtime or, INT8, the integer-only
    reference) and its NumPy host part, run like a GluonCV detector."""

    def __init__(self, folder: str, int8: bool = False, threads: int = 0,
                 runtime: str = "onnxruntime", graph: Optional[str] = None):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime '{runtime}' is not one of {RUNTIMES}")
        if runtime in INTEGER_RUNTIMES and not int8:
            raise DataError(f"the {runtime} runtime (the integer reference) runs the INT8 "
                            f"graph: add --int8")
        name = graph or (INT8_ONNX if int8 else FLOAT_ONNX)
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            hint = " (`ssd-nobias export --formats int8` writes it)" if int8 else \
                " (`ssd-nobias export --formats accelerator` writes it)"
            raise DataError(f"'{path}' does not exist{hint}")
        kind = {"onnxruntime": OnnxAccelerator, "openvino": OpenVinoAccelerator}
        self.accelerator = IntegerAccelerator(path, INTEGER_RUNTIMES[runtime]) \
            if runtime in INTEGER_RUNTIMES else kind[runtime](path, threads)
        try:
            self.host = HostPart.load(folder, int8)
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"{folder}: the host part (host.json, host.npz) is missing or "
                            f"unreadable: {err}") from None

    def __call__(self, x: mx.nd.NDArray):
        ids, scores, boxes = self.host(self.accelerator(x.asnumpy()))
        return tuple(mx.nd.array(o, ctx=x.context) for o in (ids, scores, boxes))


def checkpoint_config(params_path: str, overrides: Sequence[str] = ()):
    """The config a checkpoint was trained with, as its sidecar records it (+ overrides)."""
    if not os.path.isfile(params_path):
        raise DataError(f"checkpoint '{params_path}' does not exist")
    meta = read_meta(params_path)
    sidecar = sidecar_path(params_path)
    if meta is None and os.path.isfile(sidecar):
        raise DataError(f"{params_path} does not match the CRCs its sidecar {sidecar} records "
                        f"(a partial copy, or a write that was cut short): copy it again")
    if not meta or "config" not in meta:
        raise DataError(f"{params_path} has no sidecar recording its config (a .json beside it, "
                        f"written by training): give the config it was trained with")
    return loads_config(meta["config"], f"the config recorded beside {params_path}", overrides)


def load_predictor(cfg=None, params_path: Optional[str] = None, deploy_dir: Optional[str] = None,
                   onnx_path: Optional[str] = None, accelerator_dir: Optional[str] = None,
                   int8: bool = False, classes: Optional[Sequence[str]] = None,
                   device: Optional[str] = None, runtime: str = "onnxruntime") -> LoadedModel:
    """Exactly one of a training .params file, a deploy folder, an ONNX model or an accelerator
    folder (its graph, INT8 with `int8`, and its host part in NumPy; or one .onnx graph in
    such a folder), ready to predict; ONNX files run on the CPU in `runtime`. `cfg` is needed
    by none of them: a checkpoint's sidecar records its config; given, it says the model and
    the devices (its train.ctx, or the CPU where those are missing) unless `device` ('cpu',
    'gpu0', ...) says where to predict.
    `classes`: the dataset's, if known (checked against a checkpoint's). `runtime`: what runs
    an ONNX file (RUNTIMES; 'integer' only an INT8 accelerator graph)."""
    given = [x for x in (params_path, deploy_dir, onnx_path, accelerator_dir) if x is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of params_path, deploy_dir, onnx_path and "
                         "accelerator_dir")
    if accelerator_dir is not None:
        graph = None
        if accelerator_dir.endswith(".onnx"):  # one graph of the folder, e.g. the signed INT8
            int8 = is_int8_graph(accelerator_dir, int8)
            accelerator_dir, graph = os.path.split(os.path.abspath(accelerator_dir))
        return LoadedModel(SplitPredictor(accelerator_dir, int8, runtime=runtime, graph=graph),
                           export_classes(accelerator_dir), [mx.cpu()])
    if onnx_path is not None:
        predictor, classes = load_onnx(onnx_path, runtime)
        return LoadedModel(predictor, classes, [mx.cpu()])
    if cfg is None and params_path is not None:
        cfg = checkpoint_config(params_path)
    if device:
        ctx = contexts([device], key="--device")
    else:
        ctx = inference_contexts(cfg.train.ctx) if cfg is not None else [mx.cpu()]
    if deploy_dir is not None:
        return LoadedModel(*load_deploy(deploy_dir, ctx), ctx)
    net, classes = load_trained(cfg, params_path, ctx, classes=classes)
    return LoadedModel(net_predictor(net), classes, ctx)
