"""The run configuration: YAML + `key.sub=value` overrides -> one validated, frozen CfgNode.

The schema, `SCHEMA`, declares every key once: its default, a line on what it does, and what
values it takes. Validation, `--print-config`, "did you mean" and docs/config.md
(`python -m ssd_nobias.config`) all read it. This module is the package's ground floor: the
allowed values of model keys are declared here, and the modules that implement them (model,
nn, reparam) import them from here; nothing here imports them. A YAML file may start from
another with `_base_: other.yaml` (relative to itself) and set only what differs.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml
from yacs.config import CfgNode

from ssd_nobias.atomic import write_text
from ssd_nobias.errors import ConfigError

_VARIANTS = [(300, m) for m in ("1.0", "0.75", "0.5", "0.25")] + [(512, "1.0")]
MODEL_NAMES = tuple(f"ssd_{size}_mobilenet{mult}_{data}"
                    for size, mult in _VARIANTS for data in ("voc", "coco", "custom"))
NORMS = ("nobias", "batchnorm", "batchnorm_uncentered")  # model/norm.py NORM_LAYERS implements them
WEIGHT_MODES = ("plain", "centered", "dc_positive")  # reparam.effective_weight computes them
ACTIVATIONS = ("relu", "leaky")
IMPLS = ("auto", "native", "ops")  # NoBiasBatchNorm's implementations
DATASETS = ("voc", "coco", "voc_custom", "yolo")
KVSTORES = ("device", "local", "dist_sync", "dist_device_sync")
BASE_KEY = "_base_"
_CTX = re.compile(r"(cpu|gpu)(\d*)")


@dataclass(frozen=True)
class Key:
    """One config key: default (its type is the key's type), what it does, and the values it
    takes: one of `choices`, or any value for which `check` holds (`need` says which)."""

    default: Any
    doc: str
    choices: Tuple = ()
    check: Optional[Callable[[Any], bool]] = None
    need: str = ""

    def problem(self, value) -> str:
        """Why `value` is not allowed, or ''."""
        if self.choices and value not in self.choices:
            return f"is {value!r}; choose one of {', '.join(map(str, self.choices))}"
        if self.check is not None and not self.check(value):
            return f"{self.need}, got {value!r}"
        return ""


MAX_PIXELS = 100_000_000  # data.max_pixels' default: 10000 x 10000, about 300 MB decoded


def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return v >= 0


SCHEMA: Dict[str, Key] = {
    "name": Key("ssd300_mobilenet1.0_voc_nobias",
                "run name: the prefix of the run's checkpoint files",
                check=lambda v: bool(re.fullmatch(r"[\w.\-]+", v)),
                need="must be a file-name-safe word (letters, digits, . _ -)"),
    "output_dir": Key("", "where the run writes; empty: runs/<name>"),
    "seed": Key(0, "seed of the initial weights, the data order and the augmentation"),

    "model.name": Key("ssd_300_mobilenet1.0_voc", "architecture: "
                      "ssd_<size>_mobilenet<width>_<voc|coco|custom> (--list-models)",
                      choices=MODEL_NAMES),
    "model.norm": Key("nobias", "norm after every conv: nobias (NoBiasBatchNorm), batchnorm "
                      "(stock) or batchnorm_uncentered (stock without beta)", choices=NORMS),
    "model.bias_free": Key(["*"], "globs of layer names that get NoBiasBatchNorm (others: "
                           "BatchNorm)", check=lambda v: len(v) > 0,
                           need="must list at least one layer glob"),
    "model.heads_bias": Key(True, "whether the 12 class/box predictor convs keep a bias"),
    "model.conv_weights": Key("auto", "full and pointwise conv weights: auto | plain | "
                              "centered | dc_positive (auto: the norm's recipe)",
                              choices=("auto",) + WEIGHT_MODES),
    "model.depthwise_weights": Key("auto", "3x3 depthwise conv weights: the same choices",
                                   choices=("auto",) + WEIGHT_MODES),
    "model.activation": Key("auto", "auto | relu | leaky (auto: ReLU)",
                            choices=("auto",) + ACTIVATIONS),
    "model.leaky_slope": Key(0.1, "negative slope of activation: leaky",
                             check=lambda v: 0 < v < 1, need="must be in (0, 1)"),
    "model.norm_impl": Key("auto", "NoBiasBatchNorm's implementation: auto (compiled operator "
                           "on CPU contexts, MXNet-operator version elsewhere) | native "
                           "(compiled) | ops (portable)", choices=IMPLS),
    "model.anchor_sizes": Key([], "7 anchor sizes in input pixels, map i takes sizes i and "
                              "i + 1 (empty: the preset; scripts/anchor_coverage.py compares "
                              "them)",
                              check=lambda v: not v or (len(v) == 7 and all(
                                  b > a > 0 for a, b in zip(v, v[1:]))),
                              need="must be empty or 7 increasing positive sizes"),
    "model.pretrained_base": Key("", "a local Gluon MobileNet .params file for the base; "
                                 "empty: from scratch"),
    "model.nms_thresh": Key(0.45, "IoU above which NMS drops the lower-scored box of a class",
                            check=lambda v: 0 < v <= 1, need="must be in (0, 1]"),
    "model.nms_topk": Key(400, "boxes per image that enter NMS"),
    "model.post_nms": Key(100, "detections per image kept after NMS", check=_positive,
                          need="must be positive"),

    "data.dataset": Key("voc", "dataset layout: voc | coco | voc_custom | yolo (txt labels "
                        "with data.yaml or classes.txt)", choices=DATASETS),
    "data.root": Key("~/.mxnet/datasets/voc", "the dataset's folder"),
    "data.train_splits": Key([[2007, "trainval"], [2012, "trainval"]],
                             "training splits (voc: [[year, name]]; voc_custom: ImageSets/Main "
                             "names; coco: annotation file names; yolo: data.yaml's split "
                             "keys, or folders under images/)",
                             check=lambda v: len(v) > 0, need="must not be empty"),
    "data.val_splits": Key([[2007, "test"]], "validation splits, same form",
                           check=lambda v: len(v) > 0, need="must not be empty"),
    "data.classes": Key([], "voc_custom: the class names, or [path/to/classes.txt] (coco "
                        "and yolo name theirs in their files)"),
    "data.num_workers": Key(4, "loader worker processes (0: load in the training process)",
                            check=_non_negative, need="must be >= 0"),
    "data.mean": Key([0.485, 0.456, 0.406], "per-channel mean subtracted from RGB in [0, 1]",
                     check=lambda v: len(v) == 3, need="must be 3 values"),
    "data.std": Key([0.229, 0.224, 0.225], "per-channel std the mean-subtracted image is "
                    "divided by", check=lambda v: len(v) == 3 and min(v) > 0,
                    need="must be 3 positive values"),
    "data.normalize": Key("dataset", "dataset ((pixel / 255 - mean) / std) | per_image (that, "
                          "divided by its own RMS: invariant to contrast around the mean)",
                          choices=("dataset", "per_image")),
    "data.bad_images": Key("error", "a broken training image: error (stop, naming it) | skip "
                           "(warn, take the next); validation and evaluation always stop",
                           choices=("error", "skip")),
    "data.max_pixels": Key(MAX_PIXELS, "an image whose header says it holds more pixels is "
                           "not decoded (a decompression bomb): a bad image, see "
                           "data.bad_images", check=_positive, need="must be positive"),
    "data.max_expand": Key(4.0, "SSD's zoom-out augmentation (p 0.5) up to this factor; 1 "
                           "turns it off", check=lambda v: v >= 1, need="must be >= 1"),

    "train.ctx": Key(["cpu"], "devices: [cpu], [cpu0, cpu1] or [gpu0, gpu1, ...]",
                     check=lambda v: len(v) > 0 and all(_CTX.fullmatch(str(c)) for c in v),
                     need="must list contexts, each cpu, cpuN or gpuN"),
    "train.batch_size": Key(32, "global batch: over every context of every worker",
                            check=_positive, need="must be positive"),
    "train.epochs": Key(240, "passes over the training set", check=_positive,
                        need="must be positive"),
    "train.lr": Key(0.001, "peak learning rate (after warmup) at train.base_batch_size",
                    check=_positive, need="must be positive"),
    "train.base_batch_size": Key(0, "the global batch train.lr and warmup_iters are for (0: "
                                 "train.batch_size); other batches scale the lr linearly, the "
                                 "warmup to the same images", check=_non_negative,
                                 need="must be >= 0 (0: train.batch_size)"),
    "train.lr_mode": Key("cosine", "cosine (to 0) | step", choices=("cosine", "step")),
    "train.lr_steps": Key([160, 200], "epochs at which lr_mode step multiplies the lr by "
                          "lr_factor", check=lambda v: list(v) == sorted(v) and
                          all(s > 0 for s in v), need="must be increasing positive epochs"),
    "train.lr_factor": Key(0.1, "the step schedule's factor", check=lambda v: 0 < v <= 1,
                           need="must be in (0, 1]"),
    "train.warmup_iters": Key(0, "iterations of linear warmup from 0 to the lr, at "
                              "train.base_batch_size", check=_non_negative,
                              need="must be >= 0"),
    "train.momentum": Key(0.9, "SGD momentum", check=lambda v: 0 <= v < 1,
                          need="must be in [0, 1)"),
    "train.wd": Key(5e-4, "weight decay (not on biases, nor on norms' scale and shift unless "
                    "train.norm_wd)", check=_non_negative, need="must be >= 0"),
    "train.norm_wd": Key(False, "also decay the norms' scale and shift (gamma, beta)"),
    "train.ema_decay": Key(0.0, "0: off; else an exponential moving average of every "
                           "parameter with this decay (0.999: about the last 1000 steps) is "
                           "what validation sees and checkpoints hold (engine/ema.py)",
                           check=lambda v: 0 <= v < 1, need="must be in [0, 1)"),
    "train.precise_bn_batches": Key(0, "0: off; else before each validation every norm's "
                                    "running statistics are recomputed over this many "
                                    "training batches with the weights frozen (PreciseBN, "
                                    "engine/precise_bn.py)", check=_non_negative,
                                    need="must be >= 0"),
    "train.kvstore": Key("device", "gradient reduction: device or local (one machine), "
                         "dist_sync (CPU workers), dist_device_sync (GPU workers)",
                         choices=KVSTORES),
    "train.amp": Key(False, "float16 mixed precision (GPUs only)"),
    "train.tensorboard": Key(False, "also log to TensorBoard in <output_dir>/tensorboard: "
                             "losses, lr, images/s, val metric, a detections picture per "
                             "validation (needs the tracking extra: tensorboardX)"),
    "train.log_interval": Key(20, "iterations between log lines", check=_positive,
                              need="must be positive"),
    "train.val_interval": Key(1, "epochs between validations", check=_positive,
                              need="must be positive"),
    "train.save_interval": Key(10, "epochs between numbered checkpoints", check=_positive,
                               need="must be positive"),
    "train.checkpoint_iters": Key(0, "also write <name>-last every N iterations; 0: at epoch "
                                  "ends", check=_non_negative,
                                  need="must be >= 0 (0: epoch ends only)"),
    "train.resume": Key("", "'' (a new run), 'auto' (continue the run in output_dir) or a "
                        ".params file", check=lambda v: v in ("", "auto") or
                        v.endswith(".params"), need="must be '', 'auto' or a .params path"),

    "eval.batch_size": Key(32, "evaluation batch", check=_positive, need="must be positive"),
    "eval.metric": Key("auto", "auto | voc07 | voc | coco (auto: coco on COCO data, else "
                       "voc07)", choices=("auto", "voc07", "voc", "coco")),
    "eval.num_images": Key(16, "validation images drawn into detections.png",
                           check=_non_negative, need="must be >= 0"),
    "eval.score_thresh": Key(0.5, "score above which detections are drawn (mAP uses all)"),
}


def defaults() -> CfgNode:
    """Every key at its default, as a (mutable) CfgNode."""
    root = CfgNode()
    for key, entry in SCHEMA.items():
        node, parts = root, key.split(".")
        for part in parts[:-1]:
            if part not in node:
                node[part] = CfgNode()
            node = node[part]
        value = entry.default
        node[parts[-1]] = [list(v) if isinstance(v, list) else v for v in value] \
            if isinstance(value, list) else value
    return root


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
        lines.append(f"{key} = {value!r}{changed}\n    {SCHEMA[key].doc}")
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
    return _resolve(_chain(path) if path else [], overrides)


def loads_config(text: str, source: str, overrides: Sequence[str] = ()) -> CfgNode:
    """load_config for YAML held in a string (a checkpoint's sidecar records its config);
    `source` names it in errors."""
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source} must hold a mapping of keys")
    return _resolve([(source, loaded)], overrides)


def _resolve(sources: List[Tuple[str, dict]], overrides: Sequence[str]) -> CfgNode:
    """The defaults, then each (source, mapping), then the overrides: validated and frozen."""
    cfg = defaults()
    for source, loaded in sources:
        _merge(cfg, loaded, source=source)
    pairs = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        try:
            pairs[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as err:
            reason = str(err).splitlines()[0]
            raise ConfigError(f"override '{item}': its value is not YAML ({reason})") from None
    for key, value in pairs.items():
        node, leaf = _lookup(cfg, key)
        _merge(node, {leaf: value}, source="command line", prefix=key[: -len(leaf)])
    if not cfg.output_dir:
        cfg.output_dir = os.path.join("runs", cfg.name)
    validate(cfg)
    cfg.freeze()
    return cfg


SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def shipped_configs() -> List[str]:
    """The names of the configs the package ships (configs/ of a checkout)."""
    return sorted(n[:-len(".yaml")] for n in os.listdir(SHIPPED) if n.endswith(".yaml"))


def _chain(path: str, seen: Tuple[str, ...] = ()) -> List[Tuple[str, dict]]:
    """(file, mapping) of a YAML config and the files it starts from (`_base_`, relative to
    the file), the first base first. A path that is no file but a shipped config's name
    (`demo_synthetic`, with or without .yaml) is that config."""
    if not os.path.isfile(path):
        name = path[:-len(".yaml")] if path.endswith(".yaml") else path
        if not seen and os.sep not in name and name in shipped_configs():
            return _chain(os.path.join(SHIPPED, name + ".yaml"))
        raise ConfigError(f"config file '{path}' does not exist" +
                          (f" (the {BASE_KEY} of {seen[-1]})" if seen else
                           f"; shipped configs, by name: {', '.join(shipped_configs())}"))
    real = os.path.realpath(path)
    if real in seen:
        raise ConfigError(f"{path}: {BASE_KEY} chain loops back to it")
    try:
        with open(path) as f:
            loaded = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping of keys, not {type(loaded).__name__}")
    base = loaded.pop(BASE_KEY, None)
    if base is None:
        return [(path, loaded)]
    if not isinstance(base, str):
        raise ConfigError(f"'{BASE_KEY}' in {path} must be one file name")
    base_path = os.path.join(os.path.dirname(path), os.path.expanduser(base))
    return _chain(base_path, seen + (real,)) + [(path, loaded)]


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
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value)
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
        kind = "finite float" if isinstance(old, float) and not isinstance(old, bool) else \
            type(old).__name__
        raise ConfigError(f"'{key}' in {source} must be a {kind}, got {value!r}")
    return value


def validate(cfg: CfgNode) -> None:
    """Reject values that cannot run, before any work starts: each key against its schema
    entry, then the rules that tie keys together."""
    for key, entry in SCHEMA.items():
        problem = entry.problem(get(cfg, key))
        if problem:
            raise ConfigError(f"'{key}' {problem}")

    def need(cond: bool, key: str, why: str) -> None:
        if not cond:
            raise ConfigError(f"'{key}' {why}")

    kind = cfg.model.name.rsplit("_", 1)[1]
    allowed = {"voc": ("voc",), "coco": ("coco", "custom"), "voc_custom": ("custom",),
               "yolo": ("custom",)}
    want = allowed[cfg.data.dataset]
    need(kind in want, "model.name", f"must be a {' or '.join('*_' + w for w in want)} model "
         f"for data.dataset '{cfg.data.dataset}' (got {cfg.model.name})")
    if cfg.data.dataset == "voc_custom":
        need(len(cfg.data.classes) > 0, "data.classes",
             "must list the class names (or one classes.txt path) for voc_custom")
    t = cfg.train
    need(t.batch_size % len(t.ctx) == 0, "train.batch_size",
         f"({t.batch_size}) must be divisible by the number of contexts ({len(t.ctx)})")


PATH_KEYS = ("output_dir", "data.root", "model.pretrained_base", "train.resume")


def with_absolute_paths(cfg: CfgNode) -> CfgNode:
    """A frozen copy of `cfg` whose paths (PATH_KEYS) are absolute, `~` expanded: what a run
    records in config.yaml and its checkpoints, so that they mean the same from any folder (a
    relative classes.txt in data.classes is data.root's, so it follows)."""
    out = cfg.clone()
    out.defrost()

    def absolute(value: str) -> str:
        keep = not value or value == "auto"  # no path: '' or train.resume's 'auto'
        return value if keep else os.path.abspath(os.path.expanduser(value))

    for key in PATH_KEYS:
        node, leaf = _lookup(out, key)
        node[leaf] = absolute(node[leaf])
    out.freeze()
    return out


def save_config(cfg: CfgNode, path: str) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text(path, cfg.dump())


def base_size(cfg: CfgNode) -> int:
    """The input side of the configured model (300 or 512)."""
    return int(cfg.model.name.split("_")[1])


def per_image(cfg: CfgNode) -> bool:
    """Whether inputs are also divided by their own RMS (data.normalize: per_image)."""
    return cfg.data.normalize == "per_image"


def scaled_lr(train: CfgNode) -> Tuple[float, int]:
    """(peak lr, warmup iterations) for train.batch_size: train.lr and train.warmup_iters are
    given at train.base_batch_size; the lr scales linearly with the batch (Goyal et al. 2017,
    mmdetection's auto_scale_lr) and the warmup keeps its number of images."""
    base = train.base_batch_size or train.batch_size
    factor = train.batch_size / base
    return train.lr * factor, int(round(train.warmup_iters / factor))


def eval_metric(cfg: CfgNode) -> str:
    """The configured metric; 'auto' is COCO AP on COCO data and VOC07 mAP otherwise."""
    if cfg.eval.metric != "auto":
        return cfg.eval.metric
    return "coco" if cfg.data.dataset == "coco" else "voc07"


def config_markdown() -> str:
    """docs/config.md: every key with its default and what it does, from the schema."""
    lines = ["# Config keys", "",
             "Generated from `ssd_nobias/config.py` by `python -m ssd_nobias.config > "
             "docs/config.md` (a test keeps it equal). A YAML file sets any of these keys, "
             "`key.sub=value` on the command line overrides them, and `_base_: other.yaml` "
             "starts a file from another one."]
    section = None
    for key, entry in SCHEMA.items():
        head = key.split(".")[0] if "." in key else "run"
        if head != section:
            section = head
            lines += ["", f"## {section}", "", "| key | default | what it does |",
                      "|---|---|---|"]
        cells = (f"`{key}`", f"`{entry.default!r}`", entry.doc)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(config_markdown())
