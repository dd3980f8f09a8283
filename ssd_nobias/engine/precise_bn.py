"""Norm statistics recomputed before folding (PreciseBN, Wu & Johnson, "Rethinking Batch in
BatchNorm", 2021).

Folding puts gamma / sqrt(running_var + eps) straight into the deployed weights, and the
running statistics are a momentum average over the last few hundred iterations, taken while
the weights moved (and, in a distributed run, one rank's alone). Here they are recomputed with
the weights frozen: each norm's running statistics become the mean, over N training batches,
of the statistics of that batch at that layer, every layer normalizing with its batch
statistics as in training. For NoBiasBatchNorm the statistic is the uncentered second moment,
whose mean over batches is exactly the second moment of all their activations.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import mxnet as mx
import numpy as np
from gluoncv.model_zoo.ssd import SSD
from mxnet import gluon
from mxnet.gluon import nn

from ssd_nobias.model.checkpoint import read_meta, save_checkpoint
from ssd_nobias.config import base_size, eval_metric, per_image
from ssd_nobias.devices import inference_device
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.datasets import build_dataset, val_set
from ssd_nobias.data.loaders import SeededTransform
from ssd_nobias.data.transforms import SSDTrainTransform
from ssd_nobias.errors import DataError
from ssd_nobias.evaluation.evaluate import EvalSettings, evaluate
from ssd_nobias.progress import tracked
from ssd_nobias.runtime.predictors import load_trained, net_predictor


def norm_layers(net: gluon.Block) -> List[nn.BatchNorm]:
    """Every BatchNorm of `net` (NoBiasBatchNorm is one), in registration order."""
    found = []

    def visit(block):
        if isinstance(block, nn.BatchNorm):
            found.append(block)
        for child in block._children.values():
            visit(child)
    visit(net)
    return found


def device_batch(cfg) -> int:
    """The batch one device normalizes over in training: train.batch_size over the contexts."""
    return cfg.train.batch_size // len(cfg.train.ctx)


def training_batches(cfg, count: int, seed: int = 0) -> Iterable[mx.nd.NDArray]:
    """`count` batches of training images as training augments them, each of device_batch
    images, in a seeded order."""
    per_device = device_batch(cfg)
    dataset = build_dataset(cfg, "train")
    if len(dataset) < per_device:
        raise DataError(f"{dataset} has {len(dataset)} training images, fewer than one batch "
                        f"of {per_device}")
    size = base_size(cfg)
    transform = SSDTrainTransform(size, size, None, cfg.data.max_expand,
                                  per_image(cfg), mean=tuple(cfg.data.mean),
                                  std=tuple(cfg.data.std))
    seeded = SeededTransform(dataset, transform, cfg.data.bad_images)
    rng = np.random.RandomState(seed)
    for k in range(count):  # each image's augmentation seeded by its place: reproducible
        order = rng.choice(len(dataset), per_device, replace=False)
        yield mx.nd.stack(*[seeded[(seed * 1_000_003 + k * per_device + j, int(i))][0]
                            for j, i in enumerate(order)])


def recalibrate(net: SSD, batches: Iterable[mx.nd.NDArray], count: int,
                progress: bool = False) -> Dict[str, float]:
    """Replace every norm's running statistics by their mean over `count` of `batches`, the
    weights frozen (a forward and backward pass each, no update); `net` must not be
    hybridized yet (momentum is read when it is traced). Returns, per layer, the largest
    relative change of running_var."""
    layers = norm_layers(net)
    ctx = layers[0].running_var.list_ctx()[0]
    old = {b.name: (b.running_mean.data(ctx).asnumpy(), b.running_var.data(ctx).asnumpy())
           for b in layers}
    sums = {b.name: [np.zeros_like(old[b.name][0], np.float64),
                     np.zeros_like(old[b.name][1], np.float64)] for b in layers}
    momentum = {b.name: b._kwargs["momentum"] for b in layers}
    seen = 0
    try:
        for b in layers:
            b._kwargs["momentum"] = 0.0  # the running value after a forward: that batch's
        for x in tracked(batches, total=count, desc="recalibrate", unit="batch",
                          enabled=progress):
            # MXNet's stock BatchNorm updates its running statistics in the backward pass;
            # the gradients go nowhere (a GluonCV SSD's third output, the anchors, has none)
            with mx.autograd.record():
                outputs = net(x.as_in_context(ctx))
                outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                total = sum(o.sum() for o in outputs[:2])
            total.backward()
            for b in layers:
                sums[b.name][0] += b.running_mean.data(ctx).asnumpy()
                sums[b.name][1] += b.running_var.data(ctx).asnumpy()
            seen += 1
            if seen == count:
                break
    finally:
        for b in layers:
            b._kwargs["momentum"] = momentum[b.name]
    if seen < count:
        raise DataError(f"recalibration needs {count} batches, the data gave {seen}")
    change = {}
    for b in layers:
        mean, var = (s / seen for s in sums[b.name])
        b.running_mean.set_data(mx.nd.array(mean.astype(np.float32)))
        b.running_var.set_data(mx.nd.array(var.astype(np.float32)))
        before = old[b.name][1].astype(np.float64)
        change[b.name] = float(np.max(np.abs(var - before) / np.maximum(before, 1e-12)))
    return change


def recalibrate_params(cfg, params_path: str, prefix: str, count: int,
                       progress: bool = False, device: Optional[str] = None) -> Dict:
    """Write prefix.params (+ .json): `params_path` with every norm's statistics recomputed
    over `count` training batches; report the batches, the change of running_var and the
    val metric before and after. `device`: where (default: as inference_device says)."""
    ctx = inference_device(cfg.train.ctx, device)
    dataset, classes = val_set(cfg)

    def val(net) -> float:
        settings = EvalSettings(cfg.eval.batch_size, cfg.data.num_workers, eval_metric(cfg))
        return evaluate(net_predictor(net), dataset, classes, ctx, Preprocess.from_config(cfg),
                        settings, progress=progress).value

    before = val(load_trained(cfg, params_path, ctx, classes=classes)[0])
    net, _ = load_trained(cfg, params_path, ctx, classes=classes)
    change = recalibrate(net, training_batches(cfg, count), count, progress)
    per_device = device_batch(cfg)
    report = {"params": params_path, "batches": count, "batch": per_device,
              "images": count * per_device, "split": "train, training augmentation",
              "running_var_change_max": max(change.values()),
              "running_var_change_median": float(np.median(list(change.values()))),
              "metric": eval_metric(cfg), "val_before": before}
    path = save_checkpoint(prefix, net, None, dict(read_meta(params_path) or {},
                                                    recalibrated=report))
    report.update(file=path, val_after=val(net))
    return report


def format_recalibration(report: Dict) -> str:
    """One line for the console: what was recomputed and what it changed."""
    return (f"recalibrated {report['file']}: norm statistics over {report['batches']} training "
            f"batches of {report['batch']} ({report['images']} images); running_var changed "
            f"by up to {report['running_var_change_max']:.1%} (median "
            f"{report['running_var_change_median']:.1%}); val {report['metric']} "
            f"{report['val_before']:.4f} -> {report['val_after']:.4f}")
