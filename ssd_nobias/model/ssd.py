"""Bias-free MobileNet-SSD builders on GluonCV's SSD, and the per-layer bias report."""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import mxnet as mx
import numpy as np
from gluoncv.data import COCODetection, VOCDetection
from gluoncv.model_zoo.ssd import SSD
from mxnet.gluon import nn

from ssd_nobias.config import ACTIVATIONS, MODEL_NAMES
from ssd_nobias.errors import ConfigError
from ssd_nobias.model.norm import NoBiasBatchNorm, NormLayer, get_norm_layer
from ssd_nobias.model.reparam import WEIGHT_MODES, ReparamConv2D

# GluonCV's FeatureExpander initializes the extra layers this way (MSRA); from-scratch training
# needs it on every conv, the base included.
CONV_INIT = mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)

# MobileNet v1 body: (depthwise channels, pointwise channels, stride) at width 1.0.
_MOBILENET_BLOCKS = ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
                     (256, 512, 2)) + ((512, 512, 1),) * 5 + ((512, 1024, 2), (1024, 1024, 1))
_TAPS = ("pw11", "pw13")  # stride 16 and 32: GluonCV's 'relu22_fwd' and 'relu26_fwd'
_RATIOS = ((1, 2, 0.5),) + ((1, 2, 0.5, 3, 1.0 / 3),) * 3 + ((1, 2, 0.5),) * 2


@dataclass(frozen=True)
class Preset:
    """Anchor and extra-layer layout of one SSD variant."""

    base_size: int
    multiplier: float
    extra_filters: tuple
    sizes: tuple
    steps: tuple
    ratios: tuple = _RATIOS


def _preset(base_size: int, multiplier: float) -> Preset:
    # Extra widths are GluonCV's for this family (ssd_512_mobilenet1.0 and ssd_300_mobilenet0.25),
    # and so are the 512 model's anchor sizes. Steps are not: GluonCV's 300 models use VGG's
    # [8, 16, 32, 64, 100, 300], but MobileNet's maps at 300 are 19/10/5/3/2/1 (stride 16
    # first), which leaves the right and bottom halves without anchor centres (gluon-cv#778).
    # These match the maps, as in GluonCV's ssd_300_mobilenet1.0_lite preset. The 300 sizes are
    # SSD's scales 0.1, 0.2 .. 0.9 (anchors.ANCHOR_PRESETS["ssd"]): GluonCV's 21-315 px come
    # from a stride-8 first map, and a 21 px anchor on a 16 px grid misses most 21 px boxes;
    # scripts/anchor_coverage.py and the demo's mAP chose them (README, Models).
    filters = (512, 512, 256, 256) if multiplier >= 0.75 else (256, 256, 128, 128)
    if base_size == 300:
        return Preset(300, multiplier, filters, sizes=(30, 60, 111, 162, 213, 264, 315),
                      steps=(16, 30, 60, 100, 150, 300))
    return Preset(512, multiplier, filters, sizes=(51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492),
                  steps=(16, 32, 64, 128, 256, 512))


_NAME = re.compile(r"ssd_(300|512)_mobilenet(1\.0|0\.75|0\.5|0\.25)_(voc|coco|custom)")


def preset(name: str, anchor_sizes: Optional[Sequence[float]] = None) -> Preset:
    """The layout of model `name` (one of MODEL_NAMES), with `anchor_sizes` if given."""
    match = _NAME.fullmatch(name)
    if match is None or name not in MODEL_NAMES:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(MODEL_NAMES)}")
    layout = _preset(int(match[1]), float(match[2]))
    if anchor_sizes:
        if len(anchor_sizes) != len(layout.sizes):
            raise ValueError(f"{name} takes {len(layout.sizes)} anchor sizes, got "
                             f"{len(anchor_sizes)}")
        layout = replace(layout, sizes=tuple(float(s) for s in anchor_sizes))
    return layout


def with_anchor_sizes(cfg):
    """`cfg` with model.anchor_sizes spelled out (the model's preset when empty), as a run
    records them: a later change of a preset cannot change what its checkpoints mean."""
    if list(cfg.model.anchor_sizes):
        return cfg
    out = cfg.clone()
    out.defrost()
    out.model.anchor_sizes = [float(s) for s in preset(cfg.model.name).sizes]
    out.freeze()
    return out


@dataclass(frozen=True)
class UnitRecipe:
    """How one conv -> norm -> activation unit is built: its norm, weight mode and activation."""

    norm: NormLayer
    weights: str = "plain"  # a reparam.WEIGHT_MODES entry
    activation: str = "relu"  # relu | leaky
    slope: float = 0.1  # of the leaky activation's negative side
    impl: str = "auto"  # NoBiasBatchNorm's implementation (config.IMPLS)


# What a bias-free unit gets unless told otherwise (the ablation in studies/results/README.md chose
# it):
# centered full and pointwise filters, depthwise filters with a non-negative sum, ReLU.
BIAS_FREE_RECIPE = {"conv_weights": "centered", "depthwise_weights": "dc_positive",
                    "activation": "relu"}
STOCK_RECIPE = {"conv_weights": "plain", "depthwise_weights": "plain", "activation": "relu"}


class ConvNorm(nn.HybridBlock):
    """conv (no bias) -> norm -> activation: the unit that folds into one deploy convolution.

    The conv's weight may be reparametrized (`recipe.weights`, see reparam.py); a
    NoBiasBatchNorm applies a ReLU itself (fused); otherwise the activation follows the norm
    (ReLU as in GluonCV's MobileNet, or LeakyReLU).
    """

    def __init__(self, in_channels: int, channels: int, kernel: int, stride: int,
                 recipe: UnitRecipe, groups: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.activation, self.slope = recipe.activation, recipe.slope
        with self.name_scope():
            self.conv = ReparamConv2D(channels, kernel, in_channels, recipe.weights,
                                      strides=stride, padding=kernel // 2, groups=groups,
                                      weight_initializer=CONV_INIT)
            if isinstance(recipe.norm, type) and issubclass(recipe.norm, NoBiasBatchNorm):
                self.norm = recipe.norm(in_channels=channels, impl=recipe.impl,
                                        fuse_relu=recipe.activation == "relu")
            else:
                self.norm = recipe.norm(in_channels=channels)

    @property
    def depthwise(self) -> bool:
        return self.conv._kwargs["num_group"] > 1

    def hybrid_forward(self, F, x):
        x = self.norm(self.conv(x))
        return activate(F, x, self.activation, self.slope, getattr(self.norm, "fuse_relu", False))


def activate(F, x, activation: str, slope: float, done: bool = False):
    """The unit's activation (nothing if a fused ReLU already applied it)."""
    if done:
        return x
    if activation == "leaky":
        return F.LeakyReLU(x, act_type="leaky", slope=slope)
    return F.Activation(x, act_type="relu")


def layer_names(num_extras: int = 4) -> list:
    """Names of the conv+norm pairs of the feature extractor, in order (what `bias_free` globs)."""
    names = ["conv0"]
    for i in range(1, len(_MOBILENET_BLOCKS) + 1):
        names += [f"dw{i}", f"pw{i}"]
    for i in range(1, num_extras + 1):
        names += [f"extra{i}_reduce", f"extra{i}_conv"]
    return names


class MobileNetSSDFeatures(nn.HybridBlock):
    """MobileNet v1 base and SSD extra layers as one Gluon block with six outputs.

    Gluon all the way down (GluonCV's FeatureExpander builds the extra layers as symbols with a
    hard-coded BatchNorm), so every norm is chosen here and `net.apply` reaches every layer.
    """

    def __init__(self, multiplier: float, extra_filters: Sequence[int], recipe_for,
                 min_depth: int = 128, **kwargs):
        super().__init__(**kwargs)
        self._outputs = _TAPS + tuple(f"extra{i}_conv" for i in range(1, len(extra_filters) + 1))
        with self.name_scope():
            width = int(32 * multiplier)
            self._add("conv0", ConvNorm(3, width, 3, 2, recipe_for("conv0", False)))
            for i, (dw, pw, stride) in enumerate(_MOBILENET_BLOCKS, start=1):
                dw, pw = int(dw * multiplier), int(pw * multiplier)
                self._add(f"dw{i}", ConvNorm(width, dw, 3, stride, recipe_for(f"dw{i}", True),
                                             groups=dw))
                self._add(f"pw{i}", ConvNorm(dw, pw, 1, 1, recipe_for(f"pw{i}", False)))
                width = pw
            for i, filters in enumerate(extra_filters, start=1):
                reduce = max(min_depth, filters)  # GluonCV: 1x1 transition, reduce_ratio 1.0
                self._add(f"extra{i}_reduce",
                          ConvNorm(width, reduce, 1, 1, recipe_for(f"extra{i}_reduce", False)))
                self._add(f"extra{i}_conv",
                          ConvNorm(reduce, filters, 3, 2, recipe_for(f"extra{i}_conv", False)))
                width = filters

    def _add(self, name: str, block: ConvNorm) -> None:
        setattr(self, name, block)  # registers the child under its name, in order

    @property
    def outputs(self) -> tuple:
        """Names of the six units whose outputs feed the heads, in order."""
        return self._outputs

    def pairs(self) -> Iterator:
        """(name, ConvNorm) for every conv+norm pair, in order."""
        return iter(self._children.items())

    def hybrid_forward(self, F, x):
        outputs = []
        for name, block in self._children.items():
            x = block(x)
            if name in self._outputs:
                outputs.append(x)
        return outputs


def standard_classes(dataset: str) -> List[str]:
    """The fixed class names of a *_voc or *_coco model."""
    return list(VOCDetection.CLASSES if dataset == "voc" else COCODetection.CLASSES)


def _classes_for(dataset: str, classes: Optional[Sequence[str]]) -> list:
    if dataset == "custom":
        if not classes:
            raise ValueError("a *_custom model needs a non-empty `classes` list")
        classes = [str(c) for c in classes]
        duplicates = sorted({c for c in classes if classes.count(c) > 1})
        if duplicates:
            raise ValueError(f"`classes` lists {duplicates} more than once")
        return classes
    if classes is not None:
        raise ValueError(f"the {dataset} classes are fixed; use the *_custom model for your own")
    return standard_classes(dataset)


def _norm_selector(norm: Union[str, NormLayer], bias_free: Sequence[str]):
    """Map a layer name to its norm layer class; every pattern must match some layer."""
    layer = get_norm_layer(norm)
    patterns = tuple(bias_free)
    names = layer_names()
    if layer is nn.BatchNorm:
        if patterns != ("*",):
            raise ValueError("bias_free selects NoBiasBatchNorm layers; with norm='batchnorm' "
                             "every layer is stock BatchNorm, so leave bias_free at its default")
        return lambda name: nn.BatchNorm
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise ValueError(f"bias_free pattern '{pattern}' matches no layer; layers are "
                             f"{', '.join(names)}")
    return lambda name: layer if any(fnmatch.fnmatchcase(name, p) for p in patterns) \
        else nn.BatchNorm


def _recipe_selector(norm_for, conv_weights: Optional[str], depthwise_weights: Optional[str],
                     activation: Optional[str], leaky_slope: float, norm_impl: str = "auto"):
    """Map (layer name, depthwise?) to its UnitRecipe; None picks the recipe of the layer's norm
    (BIAS_FREE_RECIPE for NoBiasBatchNorm, STOCK_RECIPE for stock BatchNorm)."""
    for key, value, allowed in (("conv_weights", conv_weights, WEIGHT_MODES),
                                ("depthwise_weights", depthwise_weights, WEIGHT_MODES),
                                ("activation", activation, ACTIVATIONS)):
        if value is not None and value not in allowed:
            raise ValueError(f"{key} '{value}' is not one of {', '.join(allowed)}")
    if not leaky_slope > 0:
        raise ValueError(f"leaky_slope must be positive, got {leaky_slope}")

    def recipe_for(name: str, depthwise: bool) -> UnitRecipe:
        norm = norm_for(name)
        default = BIAS_FREE_RECIPE if isinstance(norm, type) and \
            issubclass(norm, NoBiasBatchNorm) else STOCK_RECIPE
        weights = depthwise_weights if depthwise else conv_weights
        weights = weights or default["depthwise_weights" if depthwise else "conv_weights"]
        return UnitRecipe(norm, weights, activation or default["activation"], leaky_slope,
                          norm_impl)
    return recipe_for


def get_model(name: str, classes: Optional[Sequence[str]] = None,
              norm: Union[str, NormLayer] = "nobias", bias_free: Sequence[str] = ("*",),
              heads_bias: bool = True, pretrained_base: Optional[Union[str, Path]] = None,
              conv_weights: Optional[str] = None, depthwise_weights: Optional[str] = None,
              activation: Optional[str] = None, leaky_slope: float = 0.1,
              norm_impl: str = "auto", anchor_sizes: Optional[Sequence[float]] = None,
              **kwargs) -> SSD:
    """Build a GluonCV `SSD` whose conv+BN pairs fold to weight-only convolutions.

    name: one of MODEL_NAMES. norm: 'nobias' (NoBiasBatchNorm where `bias_free` globs match a
    layer name from `layer_names()`, stock BatchNorm elsewhere) or 'batchnorm' (the stock
    baseline). heads_bias=False also drops the bias of the class and box predictors.
    conv_weights (full and pointwise convs) and depthwise_weights: a reparam.WEIGHT_MODES entry;
    activation: 'relu' or 'leaky' (negative slope `leaky_slope`). Left None, each unit takes
    the recipe of its norm: BIAS_FREE_RECIPE for bias-free units, STOCK_RECIPE (GluonCV's
    plain convs and ReLU) for stock BatchNorm. norm_impl: NoBiasBatchNorm's implementation,
    'auto', 'native' or 'ops' (nn.NoBiasBatchNorm).
    anchor_sizes: the 7 anchor sizes instead of the preset's (anchors.ANCHOR_PRESETS).
    pretrained_base: a local MobileNet .params file (GluonCV/Gluon model zoo layout) loaded into
    the base, which is then initialized; everything else waits for `net.initialize()`.
    kwargs go to GluonCV's SSD (nms_thresh, nms_topk, post_nms, ...).
    """
    layout = preset(name, anchor_sizes)
    base_size, multiplier, dataset = layout.base_size, layout.multiplier, name.rsplit("_", 1)[1]
    class_names = _classes_for(dataset, classes)
    recipe_for = _recipe_selector(_norm_selector(norm, bias_free), conv_weights,
                                  depthwise_weights, activation, leaky_slope, norm_impl)

    def features(**_ssd_kwargs):  # SSD passes pretrained/ctx/norm_layer: the layout fixes them
        return MobileNetSSDFeatures(multiplier, layout.extra_filters, recipe_for)

    net = SSD(network=None, base_size=base_size, features=features, num_filters=None,
              sizes=list(layout.sizes), ratios=[list(r) for r in layout.ratios],
              steps=list(layout.steps), classes=class_names, **kwargs)
    if not isinstance(net.features, MobileNetSSDFeatures):
        raise RuntimeError("GluonCV's SSD did not use the MobileNetSSDFeatures it was given")
    if not heads_bias:
        _drop_predictor_bias(net)
    if pretrained_base is not None:
        load_pretrained_base(net.features, pretrained_base)
    return net


def build_model(cfg, classes: Sequence[str]) -> SSD:
    """The SSD a run config describes; `classes` (the dataset's) name a *_custom model's outputs."""
    m = cfg.model
    custom = m.name.endswith("_custom")
    if not custom and list(classes) != _classes_for(m.name.rsplit("_", 1)[1], None):
        raise ConfigError(f"'model.name' {m.name} predicts the standard classes, but the dataset "
                          f"has {len(classes)} others; use the *_custom model")
    try:
        return get_model(m.name, classes=list(classes) if custom else None, norm=m.norm,
                         bias_free=list(m.bias_free), heads_bias=m.heads_bias,
                         conv_weights=_auto(m.conv_weights),
                         depthwise_weights=_auto(m.depthwise_weights),
                         activation=_auto(m.activation), leaky_slope=m.leaky_slope,
                         norm_impl=m.norm_impl, anchor_sizes=list(m.anchor_sizes) or None,
                         pretrained_base=m.pretrained_base or None, nms_thresh=m.nms_thresh,
                         nms_topk=m.nms_topk, post_nms=m.post_nms)
    except (ValueError, FileNotFoundError) as err:  # get_model's argument checks
        raise ConfigError(f"model: {err}") from None


def _auto(value: str) -> Optional[str]:
    return None if value == "auto" else value


def ssd_anchors(net: SSD, size: int, ctx: mx.Context) -> mx.nd.NDArray:
    """The (1, N, 4) anchors of `net` for a size x size input, its norm statistics untouched.

    GluonCV's SSD returns anchors only from a training-mode forward, and NoBiasBatchNorm
    updates its running statistics in that forward: they are saved and put back.
    """
    stats = [p for name, p in net.collect_params().items()
             if name.endswith(("running_mean", "running_var"))]
    saved = [[d.copy() for d in p.list_data()] for p in stats]
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, size, size), ctx=ctx))
    for param, copies in zip(stats, saved):
        for data, copy in zip(param.list_data(), copies):
            copy.copyto(data)
    return anchors


UNIT_KINDS = ("full", "depthwise", "pointwise", "extras")


def unit_kind(name: str) -> str:
    """The kind of a feature unit, by its layer_names() name."""
    if name.startswith("extra"):
        return "extras"
    if name.startswith("dw"):
        return "depthwise"
    return "pointwise" if name.startswith("pw") else "full"


def recipe_summary(net: SSD) -> Dict[str, str]:
    """What each kind of unit is built of (norm, weight mode, activation) and the heads'
    bias, as the first lines of a run say it; a kind whose units differ lists each variant."""
    variants: Dict[str, Dict[str, List[str]]] = {kind: {} for kind in UNIT_KINDS}
    for name, block in net.features.pairs():
        norm = type(block.norm).__name__
        activation = "fused ReLU" if getattr(block.norm, "fuse_relu", False) else \
            block.activation if block.activation == "relu" else f"leaky {block.slope:g}"
        what = f"{norm}, {block.conv.mode} weights, {activation}"
        variants[unit_kind(name)].setdefault(what, []).append(name)
    summary = {}
    for kind, found in variants.items():
        if len(found) == 1:
            summary[kind] = next(iter(found))
        else:
            summary[kind] = "; ".join(f"{what} ({', '.join(names)})"
                                      for what, names in found.items())
    heads = list(net.class_predictors) + list(net.box_predictors)
    biased = sum(h.predictor.bias is not None for h in heads)
    summary["heads"] = f"{len(heads)} predictor convs, {biased} with a bias"
    return summary


def _drop_predictor_bias(net: SSD) -> None:
    for head in list(net.class_predictors) + list(net.box_predictors):
        old = head.predictor
        with head.name_scope():
            head.predictor = nn.Conv2D(old._channels, old._kwargs["kernel"],
                                       padding=old._kwargs["pad"], use_bias=False,
                                       weight_initializer=mx.init.Xavier(magnitude=2))


def load_pretrained_base(features: MobileNetSSDFeatures, path: Union[str, Path]) -> None:
    """Load ImageNet MobileNet weights saved by Gluon (`features.<i>.weight`, ...) into the base.

    Convolutions take their weights; stock BatchNorm layers take all four arrays; NoBiasBatchNorm
    layers take gamma and, as the uncentered second moment they track, running_var +
    running_mean ** 2 (a pretrained beta or mean subtraction is a shift they cannot hold, so a
    bias-free layer starts near, not at, the pretrained function).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained_base: {path} does not exist")
    try:
        saved = {k.split(":", 1)[-1]: v for k, v in mx.nd.load(str(path)).items()}
    except mx.base.MXNetError as err:
        raise ValueError(f"pretrained_base: {path} is not an MXNet params file ({err})") from None
    index = re.compile(r"features\.(\d+)\.weight")
    conv_keys = sorted((k for k in saved if index.fullmatch(k)),
                       key=lambda k: int(index.fullmatch(k)[1]))
    base = [(name, block) for name, block in features.pairs() if not name.startswith("extra")]
    if len(conv_keys) != len(base):
        raise ValueError(f"pretrained_base: {path} has {len(conv_keys)} 'features.<i>.weight' "
                         f"convolutions, a MobileNet base has {len(base)}")
    for key, (name, block) in zip(conv_keys, base):
        prefix = f"features.{int(index.fullmatch(key)[1]) + 1}."
        arrays = {"conv.weight": saved[key]}
        for stat in ("gamma", "beta", "running_mean", "running_var"):
            if prefix + stat not in saved:
                raise ValueError(f"pretrained_base: {path} has no '{prefix + stat}' for {name}")
            arrays[f"norm.{stat}"] = saved[prefix + stat]
        if isinstance(block.norm, NoBiasBatchNorm):
            mean = arrays.pop("norm.running_mean")
            del arrays["norm.beta"]
            arrays["norm.running_var"] = arrays["norm.running_var"] + mean * mean
        params = block._collect_params_with_prefix()
        for local, value in arrays.items():
            if tuple(params[local].shape) != tuple(value.shape):
                raise ValueError(f"pretrained_base: {path} '{key}' does not match layer {name}: "
                                 f"shape {tuple(value.shape)}, the model needs "
                                 f"{tuple(params[local].shape)} (a MobileNet of another width?)")
        block.initialize(ctx=mx.cpu())
        for local, value in arrays.items():
            params[local].set_data(value)


@dataclass(frozen=True)
class LayerBias:
    """One convolution of the model as it will be once BatchNorm is folded into it."""

    name: str
    norm: str  # 'NoBiasBatchNorm', 'BatchNorm' or 'none'
    bias_free: bool  # no bias once folded, whatever the weights
    max_abs_bias: Optional[float]  # of the folded bias with the current weights, if initialized
    weights: str = "plain"  # the conv's weight reparametrization (reparam.WEIGHT_MODES)


def _folded_bias(block: ConvNorm) -> Optional[np.ndarray]:
    norm = block.norm
    if isinstance(norm, NoBiasBatchNorm):
        return np.zeros(1)
    try:
        gamma, beta, mean, var = (p.data().asnumpy() for p in
                                  (norm.gamma, norm.beta, norm.running_mean, norm.running_var))
    except RuntimeError:  # not initialized yet
        return None
    if norm._kwargs["fix_gamma"]:
        gamma = np.ones_like(gamma)
    return beta - gamma * mean / np.sqrt(var + norm._kwargs["eps"])


def _convs(block: nn.Block, prefix: str = "") -> Iterator:
    for name, child in block._children.items():
        path = f"{prefix}{name}"
        if isinstance(child, (ConvNorm, nn.Conv2D)):
            yield path, child
        else:
            yield from _convs(child, path + ".")


def bias_report(net: nn.Block) -> list:
    """Every convolution of `net` and whether it has a bias once BatchNorm is folded into it."""
    report = []
    for path, block in _convs(net):
        if isinstance(block, ConvNorm):
            bias = _folded_bias(block)
            norm = type(block.norm).__name__
            bias_free = isinstance(block.norm, NoBiasBatchNorm)
            weights = block.conv.mode
        else:
            norm, bias_free, weights = "none", block.bias is None, "plain"
            bias = np.zeros(1) if bias_free else _data_or_none(block.bias)
        max_abs = None if bias is None else float(np.abs(bias).max())
        report.append(LayerBias(path, norm, bias_free, max_abs, weights))
    return report


def _data_or_none(param) -> Optional[np.ndarray]:
    try:
        return param.data().asnumpy()
    except RuntimeError:
        return None


def format_bias_report(report: Sequence[LayerBias]) -> str:
    """The report as a table, with a closing count of bias-free layers."""
    rows = [f"{'layer':32s} {'norm':16s} {'weights':11s} {'bias-free':9s} {'max |bias|':>10s}"]
    for r in report:
        bias = "-" if r.max_abs_bias is None else f"{r.max_abs_bias:.3g}"
        rows.append(f"{r.name:32s} {r.norm:16s} {r.weights:11s} "
                    f"{'yes' if r.bias_free else 'NO':9s} {bias:>10s}")
    free = sum(r.bias_free for r in report)
    rows.append(f"{free} of {len(report)} convolutions have no bias once BatchNorm is folded")
    return "\n".join(rows)
