"""Dead activation channels, how much of each channel passes its activation and how much of its
output varies within an image, and depthwise filter sums, per unit of the feature extractor.

A channel is dead on a set of images when its pre-activation is <= 0 at every position of every
image: a ReLU gives it exactly 0 and no gradient. A channel that is alive can still carry little
a detector can use: one that passes only a few positions (its active fraction), or whose output
varies more between images than across an image's positions (its spatial share, the mean
within-image standard deviation over the standard deviation over all images and positions: 1
for a map that varies only within images, 0 for one constant across each image), leaves the
heads little to localize with. The measurement walks the units one by one so
that it sees pre-activations whatever the norm fuses, with the norm's batch statistics (what
training sees; meaningful at init, when running statistics are still their initial values) or
its running statistics (what inference and the deploy graph see).
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Sequence

import mxnet as mx
import numpy as np

from ssd_nobias.config import load_config
from ssd_nobias.data.datasets import val_set
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.engine.train import initialized_model
from ssd_nobias.export.inputs import parity_images
from ssd_nobias.model.norm import NoBiasBatchNorm
from ssd_nobias.model.ssd import ConvNorm, MobileNetSSDFeatures, activate
from ssd_nobias.runtime.predictors import load_trained


@dataclass(frozen=True)
class UnitActivity:
    """One conv -> norm -> activation unit on a batch of images."""

    name: str
    depthwise: bool
    dead: np.ndarray  # (channels,) bool: pre-activation <= 0 everywhere
    filter_sums: np.ndarray  # (channels,) sum of each effective conv filter
    active: np.ndarray  # (channels,) fraction of positions whose pre-activation is > 0
    spatial_share: np.ndarray  # (channels,) within-image std / overall std of the output (0 if
    #                            the output is constant)
    feeds_head: bool = False  # its output is one of the six maps the heads read


def spatial_share(a: np.ndarray) -> np.ndarray:
    """Per channel of NCHW `a`: the mean over images of the std over positions, over the std
    over images and positions (0 where the channel is constant)."""
    within = a.std(axis=(2, 3)).mean(axis=0)
    overall = a.std(axis=(0, 2, 3))
    return np.divide(within, overall, out=np.zeros_like(within), where=overall > 0)


def _pre_activation(pair: ConvNorm, y: mx.nd.NDArray, batch_stats: bool) -> mx.nd.NDArray:
    norm = pair.norm
    eps, axes = norm._kwargs["eps"], (0, 2, 3)
    gamma = norm.gamma.data(y.context)
    if norm._kwargs["fix_gamma"]:
        gamma = mx.nd.ones_like(gamma)
    if isinstance(norm, NoBiasBatchNorm):
        mean = mx.nd.zeros_like(gamma)
        var = mx.nd.mean(y * y, axis=axes) if batch_stats else norm.running_var.data(y.context)
        beta = mx.nd.zeros_like(gamma)
    else:
        mean = mx.nd.mean(y, axis=axes) if batch_stats else norm.running_mean.data(y.context)
        var = mx.nd.mean((y - mean.reshape((1, -1, 1, 1))) ** 2, axis=axes) if batch_stats \
            else norm.running_var.data(y.context)
        beta = norm.beta.data(y.context)
    scale = (gamma / mx.nd.sqrt(var + eps)).reshape((1, -1, 1, 1))
    return (y - mean.reshape((1, -1, 1, 1))) * scale + beta.reshape((1, -1, 1, 1))


def unit_activity(features: MobileNetSSDFeatures, x: mx.nd.NDArray,
                  batch_stats: bool = False) -> List[UnitActivity]:
    """Dead channels and filter sums of every unit for the images `x`, nothing updated."""
    units = []
    with mx.autograd.predict_mode():
        for name, pair in features.pairs():
            y = mx.nd.Convolution(x, pair.conv.deploy_weight().as_in_context(x.context),
                                  no_bias=True, **{k: v for k, v in pair.conv._kwargs.items()
                                                   if k != "no_bias"})
            pre = _pre_activation(pair, y, batch_stats)
            active = (pre > 0).mean(axis=(0, 2, 3)).asnumpy()
            sums = pair.conv.deploy_weight().sum(axis=(1, 2, 3)).asnumpy()
            x = activate(mx.nd, pre, pair.activation, pair.slope)
            units.append(UnitActivity(name, pair.depthwise, active == 0, sums, active,
                                      spatial_share(x.asnumpy()), name in features.outputs))
    return units


def dead_fraction(units: Sequence[UnitActivity]) -> float:
    """Dead channels over all channels of the units."""
    return sum(int(u.dead.sum()) for u in units) / sum(len(u.dead) for u in units)


def checkpoints_in_order(run_dir: str, name: str) -> List[str]:
    """A run's numbered checkpoints `<name>-NNNN.params` by epoch, then `<name>-last.params`."""
    numbered = sorted(glob.glob(os.path.join(run_dir, f"{glob.escape(name)}-[0-9][0-9][0-9][0-9]"
                                                      f".params")))
    last = os.path.join(run_dir, f"{name}-last.params")
    return numbered + ([last] if os.path.isfile(last) else [])


def epoch_of(path: str) -> str:
    """'0004' for run-0004.params, 'last' for run-last.params."""
    return re.search(r"-(\d{4}|last)\.params$", path)[1]


def trajectory(snapshots: Dict[str, List[UnitActivity]]) -> dict:
    """Per unit, the dead fraction, mean active fraction and mean spatial share at each snapshot
    (in the dict's order), the same over all depthwise channels, and how the channels dead at
    the last snapshot started: how many of them had a negative filter sum at the first.
    """
    labels = list(snapshots)
    first, last = snapshots[labels[0]], snapshots[labels[-1]]
    units = {}
    for k, unit in enumerate(first):
        end_dead = last[k].dead
        units[unit.name] = {
            "channels": len(unit.dead), "depthwise": unit.depthwise,
            "feeds_head": unit.feeds_head,
            "dead": [float(snapshots[s][k].dead.mean()) for s in labels],
            "active": [round(float(snapshots[s][k].active.mean()), 4) for s in labels],
            "spatial_share": [round(float(snapshots[s][k].spatial_share.mean()), 4)
                              for s in labels],
            "negative_sum_at_start": int((unit.filter_sums < 0).sum()),
            "dead_at_end": int(end_dead.sum()),
            "dead_at_end_with_negative_sum_at_start": int((end_dead & (unit.filter_sums < 0))
                                                          .sum())}
    dw = [u for u in units.values() if u["depthwise"]]
    channels = sum(u["channels"] for u in dw)
    negative = sum(u["negative_sum_at_start"] for u in dw)
    dead = sum(u["dead_at_end"] for u in dw)
    dead_negative = sum(u["dead_at_end_with_negative_sum_at_start"] for u in dw)
    def depthwise_mean(snapshot: List[UnitActivity], field: str) -> float:
        values = np.concatenate([getattr(u, field) for u in snapshot if u.depthwise])
        return round(float(values.mean()), 4)

    return {"snapshots": labels,
            "dead": [dead_fraction(snapshots[s]) for s in labels],
            "depthwise_active": [depthwise_mean(snapshots[s], "active") for s in labels],
            "depthwise_spatial_share": [depthwise_mean(snapshots[s], "spatial_share")
                                        for s in labels],
            "depthwise_channels": channels,
            "depthwise_negative_sum_at_start": negative / max(1, channels),
            "depthwise_dead_at_end": dead,
            "depthwise_dead_at_end_with_negative_sum_at_start": dead_negative,
            # P(dead at the end | the filter's sum started negative / non-negative)
            "depthwise_dead_rate_negative_start": dead_negative / max(1, negative),
            "depthwise_dead_rate_non_negative_start":
                (dead - dead_negative) / max(1, channels - negative),
            "units": units}


def run_trajectory(run_dir: str, images: int) -> dict:
    """trajectory() of a run: its initial weights, then every checkpoint in epoch order."""
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    dataset, classes = val_set(cfg)
    x = parity_images(dataset, Preprocess.from_config(cfg), count=images)
    net = initialized_model(cfg, classes, [mx.cpu()])
    snapshots = {"init": unit_activity(net.features, x, batch_stats=True)}
    for path in checkpoints_in_order(run_dir, cfg.name):
        net, _ = load_trained(cfg, path, [mx.cpu()], classes=classes)
        snapshots[epoch_of(path)] = unit_activity(net.features, x)
    return trajectory(snapshots)
