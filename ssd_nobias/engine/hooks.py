"""The training loop's extension points, and the hooks every run has.

Trainer (engine/train.py) runs the loop itself: steps, the schedule, resume, the distributed
sync of norm statistics, the stop vote and preemption. Everything around it is a Hook, called
before training, after each step, after each epoch and after training (also when training
stops early): validation, PreciseBN, checkpoints, metrics and pictures, the weight average.
A hook with `chief_only` runs on rank 0 alone, the one that writes in the run directory. A
user adds hooks with `train(cfg, hooks=[...])`; they run after the run's own, in order.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, List

import numpy as np

from ssd_nobias.config import eval_metric
from ssd_nobias.data.loaders import augmented_batch
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.engine.ema import WeightAverage
from ssd_nobias.engine.metrics import MetricsLog
from ssd_nobias.engine.precise_bn import recalibrate, training_batches
from ssd_nobias.engine.tracking import TensorBoardSink
from ssd_nobias.evaluation.evaluate import EvalSettings, detections_picture, evaluate
from ssd_nobias.plots import labelled_grid, save_image
from ssd_nobias.progress import duration, eta
from ssd_nobias.runtime.predictors import net_predictor

log = logging.getLogger("ssd_nobias")
Trainer = Any  # engine.train.Trainer, which imports this module


class Hook:
    """Does nothing at each point of the loop; a hook overrides the points it needs. Each
    method gets the Trainer: its net, cfg, epoch, iteration (both counted done), and, after a
    step, `step_losses` ([total, class, box]) and `step_images`."""

    chief_only = False

    def before_train(self, trainer: Trainer) -> None:
        pass

    def after_step(self, trainer: Trainer) -> None:
        pass

    def after_epoch(self, trainer: Trainer) -> None:
        pass

    def after_train(self, trainer: Trainer) -> None:
        pass


def validation_due(trainer: Trainer) -> bool:
    """Whether the epoch just done is validated: every val_interval epochs, and the last."""
    t = trainer.cfg.train
    return trainer.epoch % t.val_interval == 0 or trainer.epoch == t.epochs


class WeightAverageHook(Hook):
    """train.ema_decay: an exponential moving average of every parameter, updated after each
    step (engine/ema.py). Validation and checkpoints read it through `trainer.average`."""

    def __init__(self, trainer: Trainer, decay: float):
        trainer.average = WeightAverage(trainer.net, decay)

    def after_step(self, trainer: Trainer) -> None:
        trainer.average.update(trainer.iteration)


class PreciseBNHook(Hook):
    """train.precise_bn_batches: before each validation, every norm's running statistics
    recomputed over N training batches with the weights frozen (engine/precise_bn.py), so that
    what is validated, checkpointed and exported has the statistics of its final weights."""

    chief_only = True

    def __init__(self, batches: int):
        self.batches = batches

    def after_epoch(self, trainer: Trainer) -> None:
        if not validation_due(trainer):
            return
        trainer.net.hybridize(active=False)  # momentum is read when a graph is traced
        seed = trainer.cfg.seed * 1000 + trainer.epoch  # new batches each time, reproducible
        change = recalibrate(trainer.net, training_batches(trainer.cfg, self.batches, seed),
                             self.batches)
        log.info("epoch %d PreciseBN: norm statistics over %d training batches (running_var "
                 "changed by %.3g at most)", trainer.epoch, self.batches, max(change.values()))


class EvalHook(Hook):
    """Validation when due: the metric logged and recorded, `trainer.result` set, and
    `trainer.improved` when it beats `trainer.best_map` (which it then becomes)."""

    chief_only = True

    def after_epoch(self, trainer: Trainer) -> None:
        trainer.improved = False
        if not validation_due(trainer):
            return
        trainer.check_finite()
        cfg = trainer.cfg
        pictured = cfg.eval.num_images if trainer.metrics.sink is not None else 0
        settings = EvalSettings(cfg.eval.batch_size, cfg.data.num_workers, eval_metric(cfg),
                                pictured, cfg.eval.score_thresh)
        with trainer.averaged():
            result = evaluate(net_predictor(trainer.net), trainer.val_set, trainer.classes,
                              trainer.ctx, Preprocess.from_config(cfg), settings,
                              progress=True)
        log.info("epoch %d val %s %.4f", trainer.epoch, result.metric, result.value)
        trainer.metrics.add(epoch=float(trainer.epoch), iteration=trainer.iteration,
                            val_map=result.value)
        if result.samples:
            trainer.metrics.sink.add_picture("val/detections", detections_picture(
                result, trainer.val_set, trainer.classes, cfg.eval.score_thresh),
                trainer.iteration)
        trainer.result = result
        if result.value > trainer.best_map:
            trainer.best_map, trainer.improved = result.value, True


class CheckpointHook(Hook):
    """<name>-last after every epoch (with the optimizer state) and every checkpoint_iters
    iterations; <name>-best when validation improved, <name>-NNNN every save_interval epochs
    and at the end: the last checkpoint's files under a second name (hard links)."""

    chief_only = True

    def after_step(self, trainer: Trainer) -> None:
        every = trainer.cfg.train.checkpoint_iters
        if every and trainer.iteration % every == 0 and \
                trainer.iteration % trainer.iters_per_epoch:  # epoch ends are after_epoch's
            trainer.save("last", with_states=True)

    def after_epoch(self, trainer: Trainer) -> None:
        t = trainer.cfg.train
        trainer.save("last", with_states=True)
        if trainer.improved:
            trainer.name_checkpoint("last", "best", with_states=False)
        if trainer.epoch % t.save_interval == 0 or trainer.epoch == t.epochs:
            trainer.name_checkpoint("last", f"{trainer.epoch:04d}", with_states=True)


class MetricsHook(Hook):
    """metrics.csv (and TensorBoard with train.tensorboard), a log line every log_interval
    iterations with the losses, speed and time left, curves.png after each epoch, and
    train_batch.jpg before a new run's first step. `trainer.metrics` is its MetricsLog."""

    chief_only = True

    def before_train(self, trainer: Trainer) -> None:
        cfg = trainer.cfg
        sink = TensorBoardSink(os.path.join(trainer.out_dir, "tensorboard"),
                               trainer.iteration, eval_metric(cfg)) \
            if cfg.train.tensorboard else None
        trainer.metrics = MetricsLog(trainer.out_dir, trainer.iteration, sink)
        if trainer.iteration == 0:
            self.picture_first_batch(trainer)
        self.started, self.first = time.monotonic(), trainer.iteration  # the ETA's rate
        self.reset()

    def reset(self) -> None:
        self.sums, self.images, self.since = np.zeros(3), 0, time.perf_counter()
        self.steps = 0

    def after_step(self, trainer: Trainer) -> None:
        self.sums = self.sums + trainer.step_losses
        self.images += trainer.step_images
        self.steps += 1
        if trainer.iteration % trainer.cfg.train.log_interval == 0 or \
                trainer.iteration % trainer.iters_per_epoch == 0:
            self.log(trainer)

    def log(self, trainer: Trainer) -> None:
        loss, cls_loss, box_loss = (float(v) for v in self.sums / self.steps)
        # each worker trains its share of the batch as long as this one
        speed = self.images / (time.perf_counter() - self.since) * trainer.worker.num_workers
        lr = trainer.schedule(trainer.iteration - 1)
        self.reset()
        epoch = trainer.iteration / trainer.iters_per_epoch
        total = trainer.cfg.train.epochs * trainer.iters_per_epoch
        left = eta(trainer.iteration - self.first, total - self.first,
                   time.monotonic() - self.started)
        log.info("epoch %.2f iter %d loss %.4f (cls %.4f box %.4f) lr %.5g %.1f img/s, ETA %s",
                 epoch, trainer.iteration, loss, cls_loss, box_loss, lr, speed,
                 "?" if left is None else duration(left))
        trainer.metrics.add(epoch=epoch, iteration=trainer.iteration, loss=loss,
                            cls_loss=cls_loss, box_loss=box_loss, lr=lr, images_per_s=speed)
        if trainer.bar is not None:
            trainer.bar.set_postfix(loss=f"{loss:.3f}")

    def after_epoch(self, trainer: Trainer) -> None:
        trainer.metrics.draw()

    def after_train(self, trainer: Trainer) -> None:
        if trainer.metrics.sink is not None:
            trainer.metrics.sink.close()

    @staticmethod
    def picture_first_batch(trainer: Trainer) -> None:
        """train_batch.jpg: the first batch (up to 16 images) as the model gets it, after
        augmentation, with its boxes: what the data and augmentation really give."""
        cfg = trainer.cfg
        trainer.sampler.set_epoch(0)
        samples = augmented_batch(trainer.train_set, Preprocess.from_config(cfg),
                                  trainer.sampler, min(trainer.batch_size, 16),
                                  cfg.data.max_expand, cfg.data.bad_images)
        save_image(os.path.join(trainer.out_dir, "train_batch.jpg"), labelled_grid(
            samples, trainer.classes, title=f"the first training batch, augmented "
                                            f"({len(samples)} of {trainer.batch_size} images)"))


def default_hooks(trainer: Trainer) -> List[Hook]:
    """The hooks a config asks for, in the order they run: the weight average after each
    step; after each epoch PreciseBN, validation, checkpoints, then the curves."""
    t = trainer.cfg.train
    hooks: List[Hook] = []
    if t.ema_decay:
        hooks.append(WeightAverageHook(trainer, t.ema_decay))
    if t.precise_bn_batches:
        hooks.append(PreciseBNHook(t.precise_bn_batches))
    hooks += [EvalHook(), CheckpointHook(), MetricsHook()]
    return hooks


def running(hooks: List[Hook], chief: bool) -> List[Hook]:
    """The hooks this process runs: all on rank 0, the others those not chief_only."""
    return [h for h in hooks if chief or not h.chief_only]
