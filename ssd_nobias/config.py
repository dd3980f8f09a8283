"""The run configuration: YAML + `key.sub=value` overrides -> one validated, frozen CfgNode.

Every key, its type and its default live in `defaults()`; a YAML file may only set keys that
exist there. Builders (`build_model`, `build_dataset`, ...) are the only readers.
"""
from __future__ import annotations

import difflib
import os
import re
from typing import List, Optional, Sequence, Tuple

import mxnet as mx
import yaml
from yacs.config import CfgNode

from .atomic import write_text
from .errors import ConfigError
from .model import ACTIVATIONS, MODEL_NAMES
from .reparam import WEIGHT_MODES
from .nn import IMPLS, NORM_LAYERS


def defaults() -> CfgNode:
    """The schema: every key a config may set, with its default and type."""
    c = CfgNode()
    c.name = "ssd300_mobilenet1.0_voc_nobias"  # run name: prefix of the params files
    c.output_dir = ""  # default runs/<name>
    c.seed = 0

    c.model = CfgNode()
    c.model.name = "ssd_300_mobilenet1.0_voc"
    c.model.norm = "nobias"
    c.model.bias_free = ["*"]
    c.model.heads_bias = True
    # The bias-free recipe (model.BIAS_FREE_RECIPE): 'auto' gives bias-free units the recipe and
    # stock BatchNorm units GluonCV's plain conv + ReLU.
    c.model.conv_weights = "auto"  # full and pointwise convs: auto | plain | centered | dc_positive
    c.model.depthwise_weights = "auto"  # 3x3 depthwise convs: the same choices
    c.model.activation = "auto"  # auto | relu | leaky
    c.model.leaky_slope = 0.1  # negative slope of activation: leaky
    # NoBiasBatchNorm's implementation: auto (compiled operator on CPU contexts, MXNet-operator
    # version elsewhere) | native | ops (nn.NoBiasBatchNorm)
    c.model.norm_impl = "auto"
    c.model.anchor_sizes = []  # empty: the model's preset; else 7 sizes in input pixels
    c.model.pretrained_base = ""  # a local Gluon MobileNet .params file; empty: from scratch
    c.model.nms_thresh = 0.45
    c.model.nms_topk = 400
    c.model.post_nms = 100

    c.data = CfgNode()
    c.data.dataset = "voc"  # voc | coco | voc_custom
    c.data.root = "~/.mxnet/datasets/voc"
    # voc: [[year, name], ...]; voc_custom: ImageSets/Main names; coco: annotation file names
    c.data.train_splits = [[2007, "trainval"], [2012, "trainval"]]
    c.data.val_splits = [[2007, "test"]]
    c.data.classes = []  # voc_custom: the class names, or [path/to/classes.txt]
    c.data.num_workers = 4
    c.data.mean = [0.485, 0.456, 0.406]
    c.data.std = [0.229, 0.224, 0.225]
    # per_image: the normalized image is divided by its own RMS (one scalar, no additive term):
    # the network sees the same input whatever the image's contrast around the mean
    c.data.normalize = "dataset"
    # A training image that is truncated, corrupt or not the size its annotation says: 'error'
    # stops the run naming it; 'skip' replaces it by the next image with a warning naming it.
    # Validation and evaluation always stop.
    c.data.bad_images = "error"
    c.data.max_expand = 4.0  # SSD's zoom-out augmentation (p 0.5) up to this factor; 1 turns it off

    c.train = CfgNode()
    c.train.ctx = ["cpu"]  # ["gpu0", "gpu1", ...] or ["cpu"] / ["cpu0", "cpu1"]
    c.train.batch_size = 32  # global: total over all contexts of all workers
    c.train.epochs = 240
    c.train.lr = 0.001
    # The global batch train.lr and train.warmup_iters are given for (0: train.batch_size).
    # Another batch scales the lr linearly and the warmup to the same number of images.
    c.train.base_batch_size = 0
    c.train.lr_mode = "cosine"  # cosine | step
    c.train.lr_steps = [160, 200]  # epochs, for lr_mode step
    c.train.lr_factor = 0.1
    c.train.warmup_iters = 0
    c.train.momentum = 0.9
    c.train.wd = 5e-4
    c.train.norm_wd = False  # weight decay on the norms' scale and shift
    c.train.kvstore = "device"
    c.train.amp = False
    c.train.log_interval = 20  # iterations
    c.train.val_interval = 1  # epochs
    c.train.save_interval = 10  # epochs
    c.train.checkpoint_iters = 0  # also write <name>-last every N iterations; 0: epoch ends only
    c.train.resume = ""  # "", "auto" or a checkpoint .params path

    c.eval = CfgNode()
    c.eval.batch_size = 32
    c.eval.metric = "auto"  # auto | voc07 | voc | coco
    c.eval.num_images = 16  # val images drawn in detections.png
    c.eval.score_thresh = 0.5  # for drawing only; mAP uses every kept detection
    return c


# One line per key: what `--print-config` says of it (a test checks every key has one).
DOCS = {
    "name": "run name: the prefix of the run's checkpoint files",
    "output_dir": "where the run writes; empty: runs/<name>",
    "seed": "seed of the initial weights, the data order and the augmentation",
    "model.name": "architecture: ssd_<size>_mobilenet<width>_<voc|coco|custom> (--list-models)",
    "model.norm": "norm after every conv: nobias (NoBiasBatchNorm), batchnorm (stock) or "
                  "batchnorm_uncentered (stock without beta)",
    "model.bias_free": "globs of layer names that get NoBiasBatchNorm (others: BatchNorm)",
    "model.heads_bias": "whether the 12 class/box predictor convs keep a bias",
    "model.conv_weights": "full and pointwise conv weights: auto | plain | centered | "
                          "dc_positive (auto: the norm's recipe)",
    "model.depthwise_weights": "3x3 depthwise conv weights: the same choices",
    "model.activation": "auto | relu | leaky (auto: ReLU)",
    "model.leaky_slope": "negative slope of activation: leaky",
    "model.norm_impl": "NoBiasBatchNorm's implementation: auto | native (compiled) | ops "
                       "(portable)",
    "model.anchor_sizes": "7 anchor sizes in input pixels, map i takes sizes i and i + 1 "
                          "(empty: the preset; scripts/anchor_coverage.py compares them)",
    "model.pretrained_base": "a local Gluon MobileNet .params file for the base; empty: "
                             "from scratch",
    "model.nms_thresh": "IoU above which NMS drops the lower-scored box of a class",
    "model.nms_topk": "boxes per image that enter NMS",
    "model.post_nms": "detections per image kept after NMS",
    "data.dataset": "dataset layout: voc | coco | voc_custom",
    "data.root": "the dataset's folder",
    "data.train_splits": "training splits (voc: [[year, name]]; voc_custom: ImageSets/Main "
                         "names; coco: annotation file names)",
    "data.val_splits": "validation splits, same form",
    "data.classes": "voc_custom: the class names, or [path/to/classes.txt]",
    "data.num_workers": "loader worker processes (0: load in the training process)",
    "data.mean": "per-channel mean subtracted from RGB in [0, 1]",
    "data.std": "per-channel std the mean-subtracted image is divided by",
    "data.normalize": "dataset ((pixel / 255 - mean) / std) | per_image (that, divided by its "
                      "own RMS: invariant to contrast around the mean)",
    "data.bad_images": "a broken training image: error (stop, naming it) | skip (warn, "
                       "take the next)",
    "data.max_expand": "SSD's zoom-out augmentation (p 0.5) up to this factor; 1 turns it off",
    "train.ctx": "devices: [cpu], [cpu0, cpu1] or [gpu0, gpu1, ...]",
    "train.batch_size": "global batch: over every context of every worker",
    "train.epochs": "passes over the training set",
    "train.lr": "peak learning rate (after warmup) at train.base_batch_size",
    "train.base_batch_size": "the global batch train.lr and warmup_iters are for (0: "
                             "train.batch_size); other batches scale the lr linearly, the "
                             "warmup to the same images",
    "train.lr_mode": "cosine (to 0) | step",
    "train.lr_steps": "epochs at which lr_mode step multiplies the lr by lr_factor",
    "train.lr_factor": "the step schedule's factor",
    "train.warmup_iters": "iterations of linear warmup from 0 to the lr, at "
                          "train.base_batch_size",
    "train.momentum": "SGD momentum",
    "train.wd": "weight decay (not on biases, nor on norms' scale and shift unless "
                "train.norm_wd)",
    "train.norm_wd": "also decay the norms' scale and shift (gamma, beta)",
    "train.kvstore": "gradient reduction: device | local | dist_sync | dist_device_sync",
    "train.amp": "float16 mixed precision (GPUs only)",
    "train.log_interval": "iterations between log lines",
    "train.val_interval": "epochs between validations",
    "train.save_interval": "epochs between numbered checkpoints",
    "train.checkpoint_iters": "also write <name>-last every N iterations; 0: at epoch ends",
    "train.resume": "'' (a new run), 'auto' (continue the run in output_dir) or a .params file",
    "eval.batch_size": "evaluation batch",
    "eval.metric": "auto | voc07 | voc | coco (auto: coco on COCO data, else voc07)",
    "eval.num_images": "validation images drawn into detections.png",
    "eval.score_thresh": "score above which detections are drawn (mAP uses all)",
}


def keys(node: Optional[CfgNode] = None, prefix: str = "") -> List[str]:
    """Every leaf key of the schema (or of `node`), dotted, in definition order."""
    node = defaults() if node is None else node
    out = []
    for key, value in node.items():
        if isinstance(value, CfgNode):
            out += keys(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def get(cfg: CfgNode, key: str):
    """The value of a dotted key."""
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def describe(cfg: CfgNode) -> str:
    """The resolved config, one key a line: value, the default when it differs, what it does."""
    base = defaults()
    lines = []
    for key in keys():
        value, default = get(cfg, key), get(base, key)
        changed = "" if value == default else f"  (default {default!r})"
        lines.append(f"{key} = {value!r}{changed}\n    {DOCS[key]}")
    return "\n".join(lines)


def _did_you_mean(key: str, prefix: str) -> str:
    """' (did you mean ...?)' with the nearest known keys, or ''."""
    candidates = [k for k in keys() if k.startswith(prefix)] or keys()
    near = difflib.get_close_matches(key, candidates, n=3, cutoff=0.8) or \
        difflib.get_close_matches(key, candidates, n=2, cutoff=0.6)
    if not near:  # a known leaf in another section (batchsize -> train.batch_size)
        leaf = key.rsplit(".", 1)[-1]
        near = [k for k in keys() if difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1]],
                                                                 cutoff=0.75)][:3]
    return f" (did you mean {' or '.join(near)}?)" if near else ""


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> CfgNode:
    """Read a YAML config, apply `key.sub=value` overrides, validate and freeze."""
    cfg = defaults()
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file '{path}' does not exist")
        try:
            with open(path) as f:
                loaded = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of keys, not {type(loaded).__name__}")
        _merge(cfg, loaded, source=path)
    pairs = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        pairs[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    for key, value in pairs.items():
        node, leaf = _lookup(cfg, key)
        _merge(node, {leaf: value}, source="command line", prefix=key[: -len(leaf)])
    if not cfg.output_dir:
        cfg.output_dir = os.path.join("runs", cfg.name)
    validate(cfg)
    cfg.freeze()
    return cfg


def _lookup(cfg: CfgNode, key: str):
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), CfgNode):
            raise ConfigError(f"unknown config key '{'.'.join(parts[:i + 1])}' (in '{key}')"
                              f"{_did_you_mean(key, '')}")
        node = node[part]
    return node, parts[-1]


def _merge(node: CfgNode, values: dict, source: str, prefix: str = "") -> None:
    """Set values into node, checking that every key exists and every type matches."""
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in node:
            raise ConfigError(f"unknown config key '{full}' in {source}"
                              f"{_did_you_mean(full, prefix)}")
        old = node[key]
        if isinstance(old, CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"'{full}' in {source} must be a mapping of keys")
            _merge(old, value, source, prefix=full + ".")
            continue
        node[key] = _coerce(full, old, value, source)


def _coerce(key: str, old, value, source: str):
    if isinstance(old, (int, float)) and not isinstance(old, bool) and isinstance(value, str):
        try:  # YAML 1.1 reads 5e-4 (no dot) as a string
            value = type(old)(value) if isinstance(old, float) else int(value)
        except ValueError:
            pass
    if isinstance(old, bool):
        ok = isinstance(value, bool)
    elif isinstance(old, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(old, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(old, str):
        ok = isinstance(value, str)
    elif isinstance(old, list):
        ok = isinstance(value, list)
    else:
        ok = type(value) is type(old)
    if not ok:
        raise ConfigError(f"'{key}' in {source} must be a {type(old).__name__}, "
                          f"got {value!r}")
    return value


_CTX = re.compile(r"(cpu|gpu)(\d*)")


def validate(cfg: CfgNode) -> None:
    """Reject values that cannot run, before any work starts."""
    def need(cond: bool, key: str, why: str) -> None:
        if not cond:
            raise ConfigError(f"'{key}' {why}")

    need(bool(re.fullmatch(r"[\w.\-]+", cfg.name)), "name",
         "must be a file-name-safe word (letters, digits, . _ -)")
    need(cfg.model.name in MODEL_NAMES, "model.name",
         f"is '{cfg.model.name}'; choose one of {', '.join(MODEL_NAMES)}")
    need(cfg.model.norm in NORM_LAYERS, "model.norm", f"must be one of {sorted(NORM_LAYERS)}")
    need(len(cfg.model.bias_free) > 0, "model.bias_free", "must list at least one layer glob")
    for key in ("conv_weights", "depthwise_weights"):
        need(cfg.model[key] in ("auto",) + WEIGHT_MODES, f"model.{key}",
             f"is '{cfg.model[key]}'; choose one of auto, {', '.join(WEIGHT_MODES)}")
    need(cfg.model.activation in ("auto",) + ACTIVATIONS, "model.activation",
         f"is '{cfg.model.activation}'; choose one of auto, {', '.join(ACTIVATIONS)}")
    need(cfg.model.norm_impl in IMPLS, "model.norm_impl",
         f"is '{cfg.model.norm_impl}'; choose one of {', '.join(IMPLS)}")
    need(0 < cfg.model.leaky_slope < 1, "model.leaky_slope",
         f"must be in (0, 1), got {cfg.model.leaky_slope}")
    need(0 < cfg.model.nms_thresh <= 1, "model.nms_thresh", "must be in (0, 1]")
    need(cfg.model.post_nms > 0, "model.post_nms", "must be positive")
    sizes = list(cfg.model.anchor_sizes)
    need(not sizes or (len(sizes) == 7 and all(b > a > 0 for a, b in zip(sizes, sizes[1:]))),
         "model.anchor_sizes", f"must be empty or 7 increasing positive sizes, got {sizes}")
    need(cfg.data.dataset in ("voc", "coco", "voc_custom"), "data.dataset",
         "must be one of voc, coco, voc_custom")
    kind = cfg.model.name.rsplit("_", 1)[1]
    allowed = {"voc": ("voc",), "coco": ("coco", "custom"), "voc_custom": ("custom",)}
    want = allowed[cfg.data.dataset]
    need(kind in want, "model.name", f"must be a {' or '.join('*_' + w for w in want)} model "
         f"for data.dataset '{cfg.data.dataset}' (got {cfg.model.name})")
    if cfg.data.dataset == "voc_custom":
        need(len(cfg.data.classes) > 0, "data.classes",
             "must list the class names (or one classes.txt path) for voc_custom")
    need(len(cfg.data.train_splits) > 0, "data.train_splits", "must not be empty")
    need(len(cfg.data.val_splits) > 0, "data.val_splits", "must not be empty")
    need(cfg.data.num_workers >= 0, "data.num_workers", "must be >= 0")
    need(cfg.data.normalize in ("dataset", "per_image"), "data.normalize",
         f"must be dataset or per_image, got '{cfg.data.normalize}'")
    need(len(cfg.data.mean) == 3 and len(cfg.data.std) == 3 and min(cfg.data.std) > 0,
         "data.mean/std", "must be 3 values each, std positive")
    need(cfg.data.bad_images in ("error", "skip"), "data.bad_images",
         f"must be error or skip, got '{cfg.data.bad_images}'")
    need(cfg.data.max_expand >= 1, "data.max_expand", f"must be >= 1, got {cfg.data.max_expand}")

    t = cfg.train
    need(len(t.ctx) > 0, "train.ctx", "must list at least one context")
    for name in t.ctx:
        need(bool(_CTX.fullmatch(str(name))), "train.ctx",
             f"entry '{name}' is not cpu, cpuN or gpuN")
    need(t.batch_size > 0, "train.batch_size", "must be positive")
    need(t.batch_size % len(t.ctx) == 0, "train.batch_size",
         f"({t.batch_size}) must be divisible by the number of contexts ({len(t.ctx)})")
    need(t.epochs > 0, "train.epochs", "must be positive")
    need(t.lr > 0, "train.lr", f"must be positive, got {t.lr}")
    need(t.base_batch_size >= 0, "train.base_batch_size", "must be >= 0 (0: train.batch_size)")
    need(t.lr_mode in ("cosine", "step"), "train.lr_mode", "must be cosine or step")
    need(list(t.lr_steps) == sorted(t.lr_steps) and all(s > 0 for s in t.lr_steps),
         "train.lr_steps", "must be increasing positive epochs")
    need(0 < t.lr_factor <= 1, "train.lr_factor", "must be in (0, 1]")
    need(t.warmup_iters >= 0, "train.warmup_iters", "must be >= 0")
    need(0 <= t.momentum < 1, "train.momentum", "must be in [0, 1)")
    need(t.wd >= 0, "train.wd", "must be >= 0")
    need(t.kvstore in ("device", "local", "dist_sync", "dist_device_sync"), "train.kvstore",
         "must be device or local (one machine), dist_sync (CPU workers) or dist_device_sync "
         "(GPU workers)")
    need(t.log_interval > 0, "train.log_interval", "must be positive")
    need(t.val_interval > 0, "train.val_interval", "must be positive")
    need(t.save_interval > 0, "train.save_interval", "must be positive")
    need(t.checkpoint_iters >= 0, "train.checkpoint_iters", "must be >= 0 (0: epoch ends only)")
    need(t.resume in ("", "auto") or t.resume.endswith(".params"), "train.resume",
         "must be '', 'auto' or a .params checkpoint path")
    need(cfg.eval.batch_size > 0, "eval.batch_size", "must be positive")
    need(cfg.eval.metric in ("auto", "voc07", "voc", "coco"), "eval.metric",
         "must be auto, voc07, voc or coco")
    need(cfg.eval.num_images >= 0, "eval.num_images", "must be >= 0")


def save_config(cfg: CfgNode, path: str) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text(path, cfg.dump())


def base_size(cfg: CfgNode) -> int:
    """The input side of the configured model (300 or 512)."""
    return int(cfg.model.name.split("_")[1])


def per_image(cfg: CfgNode) -> bool:
    """Whether inputs are also divided by their own RMS (data.normalize: per_image)."""
    return cfg.data.normalize == "per_image"


def with_anchor_sizes(cfg: CfgNode) -> CfgNode:
    """`cfg` with model.anchor_sizes spelled out (the model's preset when empty), as a run
    records them: a later change of a preset cannot change what its checkpoints mean."""
    if list(cfg.model.anchor_sizes):
        return cfg
    from .model import preset
    out = cfg.clone()
    out.defrost()
    out.model.anchor_sizes = [float(s) for s in preset(cfg.model.name).sizes]
    out.freeze()
    return out


def scaled_lr(train: CfgNode) -> Tuple[float, int]:
    """(peak lr, warmup iterations) for train.batch_size: train.lr and train.warmup_iters are
    given at train.base_batch_size; the lr scales linearly with the batch (Goyal et al. 2017,
    mmdetection's auto_scale_lr) and the warmup keeps its number of images."""
    base = train.base_batch_size or train.batch_size
    factor = train.batch_size / base
    return train.lr * factor, int(round(train.warmup_iters / factor))


def contexts(names: Sequence[str]) -> List[mx.Context]:
    """MXNet contexts for 'cpu', 'cpuN', 'gpuN'; asking for a GPU that is not there is an error."""
    gpus = mx.context.num_gpus()
    out = []
    for name in names:
        kind, index = re.fullmatch(r"(cpu|gpu)(\d*)", name).groups()
        index = int(index or 0)
        if kind == "gpu" and index >= gpus:
            raise ConfigError(f"'train.ctx' asks for {name}, but this machine has {gpus} GPU(s) "
                              f"visible to MXNet; use ctx: [cpu]")
        out.append(mx.gpu(index) if kind == "gpu" else mx.cpu(index))
    if len(set(out)) != len(out):
        raise ConfigError(f"'train.ctx' lists a context twice: {list(names)}")
    return out


def eval_metric(cfg: CfgNode) -> str:
    """The configured metric; 'auto' is COCO AP on COCO data and VOC07 mAP otherwise."""
    if cfg.eval.metric != "auto":
        return cfg.eval.metric
    return "coco" if cfg.data.dataset == "coco" else "voc07"
