"""The training recipe: SSD multibox loss, SGD with warmup and cosine/step decay, validation,
atomic checkpoints with optimizer state, resume, and the run directory's logs and curves."""
from __future__ import annotations

import csv
import logging
import math
import os
import random
import signal
import statistics
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import mxnet as mx
import numpy as np
from gluoncv.loss import SSDMultiBoxLoss
from mxnet import autograd, gluon
from tqdm import tqdm
from yacs.config import CfgNode

from ssd_nobias.model import native
from ssd_nobias.atomic import make_folder, remove_stale_temps, replacing
from ssd_nobias.model.checkpoint import (find_resume, first_non_finite, link_checkpoint,
                                         load_checkpoint, save_checkpoint)
from ssd_nobias.config import (base_size, eval_metric, save_config, scaled_lr,
                               with_absolute_paths)
from ssd_nobias.devices import contexts
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.datasets import build_dataset, val_set
from ssd_nobias.data.loaders import EpochSampler, augmented_batch, split_batch, train_loader
from ssd_nobias.engine.ema import WeightAverage
from ssd_nobias.engine.distributed import (RunningStatsSync, StopVote, Worker, connect,
                                           params_checksum)
from ssd_nobias.errors import ConfigError, UserError
from ssd_nobias.progress import duration, eta
from ssd_nobias.evaluation.evaluate import (EvalResult, EvalSettings, detections_picture,
                                             evaluate)
from ssd_nobias.machine import cpu_info, omp_threads
from ssd_nobias.model.ssd import (CONV_INIT, build_model, recipe_summary, ssd_anchors,
                                  with_anchor_sizes)
from ssd_nobias.model.norm import impl_summary
from ssd_nobias.plots import labelled_grid, plot_training_curves, save_image
from ssd_nobias.runtime.predictors import net_predictor
from ssd_nobias.engine.preemption import Preempted, RunLock, StopRequest
from ssd_nobias.engine.run_dir import StartGuard, claim
from ssd_nobias.engine.tracking import TensorBoardSink

log = logging.getLogger("ssd_nobias")

CSV_FIELDS = ("epoch", "iteration", "loss", "cls_loss", "box_loss", "lr", "images_per_s",
              "val_map")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the message names the iteration and the losses."""


class _StopNow(Exception):
    """Every worker agreed to stop after the step just taken."""


@dataclass(frozen=True)
class Schedule:
    """Learning rate per iteration: linear warmup, then cosine to 0 or steps at given epochs."""

    lr: float
    total_iters: int
    iters_per_epoch: int
    warmup_iters: int = 0
    mode: str = "cosine"
    steps: Sequence[int] = ()
    factor: float = 0.1

    def __call__(self, iteration: int) -> float:
        if iteration < self.warmup_iters:
            return self.lr * (iteration + 1) / self.warmup_iters
        if self.mode == "cosine":
            span = max(1, self.total_iters - self.warmup_iters)
            progress = min(1.0, (iteration - self.warmup_iters) / span)
            return self.lr * 0.5 * (1 + math.cos(math.pi * progress))
        passed = sum(iteration >= s * self.iters_per_epoch for s in self.steps)
        return self.lr * self.factor ** passed


def no_decay_params(net: gluon.Block, norm_wd: bool) -> List[str]:
    """Set wd_mult 0 on biases and, unless norm_wd, on every norm's scale and shift (gamma and
    beta: stock BatchNorm's and NoBiasBatchNorm's alike); return their names."""
    names = []
    norm_params = ("_gamma", "_beta")
    for name, param in net.collect_params().items():
        if name.endswith("_bias") or (not norm_wd and name.endswith(norm_params)):
            param.wd_mult = 0.0
            names.append(name)
    return names


def amp_fp32_ops() -> List[str]:
    """AMP's float32 operators. The compiled nobias_batch_norm takes float16 data on GPUs with
    float32 statistics, as MXNet's BatchNorm; its CPU compute takes no float16, so AMP casts its
    input up where no GPU compute is available."""
    from mxnet.contrib import amp
    cpu_only = hasattr(mx.sym, "nobias_batch_norm") and native.gpu_error() is not None
    return amp.list_fp32_ops("float16") + (["nobias_batch_norm"] if cpu_only else [])


def seed_everything(seed: int) -> None:
    """Seed MXNet, NumPy and Python for a repeatable CPU run."""
    mx.random.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def initialized_model(cfg: CfgNode, classes: Sequence[str], ctx: Sequence[mx.Context]):
    """The config's model with the weights a run of seed cfg.seed starts from."""
    seed_everything(cfg.seed)
    net = build_model(cfg, classes)
    with warnings.catch_warnings():  # a pretrained base is initialized already
        warnings.simplefilter("ignore")
        net.initialize(init=CONV_INIT, ctx=list(ctx))
    net.collect_params().reset_ctx(list(ctx))
    return net


def setup_logging(out_dir: Optional[str]) -> Optional[logging.Handler]:
    """Log to the console and out_dir/train.log (unless None); returns the file handler."""
    log.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in log.handlers):
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(console)
    if out_dir is None:
        return None
    handler = logging.FileHandler(os.path.join(out_dir, "train.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    return handler


def read_metrics(out_dir: str) -> List[Dict[str, str]]:
    """The rows of a run's metrics.csv (CSV_FIELDS, as strings; empty where not measured)."""
    with open(os.path.join(out_dir, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def run_curves(out: str) -> dict:
    """A run's val metric per validated epoch ([epoch, value]), its training losses averaged
    per epoch ([epoch, loss, class, box]) and its median images/s (the first row left out:
    it includes the warm-up), from metrics.csv."""
    rows = read_metrics(out)
    val = [(float(r["epoch"]), float(r["val_map"])) for r in rows if r["val_map"]]
    per_epoch: Dict[int, list] = {}
    for r in rows:
        if r["loss"]:
            per_epoch.setdefault(int(np.ceil(float(r["epoch"]) - 1e-9)), []).append(
                [float(r["loss"]), float(r["cls_loss"]), float(r["box_loss"])])
    losses = [[e] + np.round(np.mean(v, 0), 4).tolist() for e, v in sorted(per_epoch.items())]
    speeds = [float(r["images_per_s"]) for r in rows if r["images_per_s"]]
    return {"val_curve": val, "loss_curve": losses,
            "train_images_per_s": statistics.median(speeds[1:] or speeds)}


class MetricsLog:
    """metrics.csv of a run (appended, truncated past the resume point) and its curves.png;
    each row also goes to `sink` (TensorBoard) if given."""

    def __init__(self, out_dir: str, resume_iteration: int,
                 sink: Optional[TensorBoardSink] = None):
        self.path = os.path.join(out_dir, "metrics.csv")
        self.plot = os.path.join(out_dir, "curves.png")
        self.sink = sink
        rows = []
        if resume_iteration and os.path.exists(self.path):
            rows = [r for r in read_metrics(out_dir) if int(r["iteration"]) <= resume_iteration]
        self.rows: List[Dict[str, str]] = rows
        self._write_all()

    def add(self, **values) -> None:
        row = {k: _fmt(values.get(k)) for k in CSV_FIELDS}
        self.rows.append(row)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, CSV_FIELDS).writerow(row)
        if self.sink is not None:
            self.sink.add_row({k: values.get(k) for k in CSV_FIELDS})

    def draw(self) -> None:
        plot_training_curves(self.plot, self.rows)

    def _write_all(self) -> None:
        with replacing(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, CSV_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class _Meter:
    """Loss sums, iterations and images since the last log line."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums, self.count, self.images = np.zeros(3), 0, 0
        self.start = time.perf_counter()

    def add(self, losses: np.ndarray, images: int) -> None:
        self.sums, self.count, self.images = self.sums + losses, self.count + 1, \
            self.images + images

    def means(self) -> List[float]:
        return [float(v) for v in self.sums / self.count]

    def images_per_s(self) -> float:
        return self.images / (time.perf_counter() - self.start)


class Trainer:
    """One run: model, data, optimizer and run directory built from a config."""

    def __init__(self, cfg: CfgNode, worker: Optional[Worker] = None,
                 stop: Optional[StopRequest] = None,
                 on_first_step: Callable[[], None] = lambda: None):
        self.cfg = with_anchor_sizes(cfg)  # recorded in config.yaml and every checkpoint
        self.stop = stop or StopRequest()  # never requested unless installed
        self.on_first_step = on_first_step
        self.ctx = contexts(cfg.train.ctx)
        self.out_dir = cfg.output_dir
        make_folder(self.out_dir)
        self.worker = worker or connect(cfg.train.kvstore)
        self._check_devices()
        seed_everything(cfg.seed)
        self._build_data_and_model()
        self._build_optimizer()
        self.loss_fn = SSDMultiBoxLoss()
        self.average = WeightAverage(self.net, cfg.train.ema_decay) \
            if cfg.train.ema_decay else None
        self.epoch, self.iteration, self.best_map = 0, 0, -1.0
        self.stepped = False

    def _check_devices(self) -> None:
        t = self.cfg.train
        if t.amp and any(c.device_type != "gpu" for c in self.ctx):
            raise ConfigError("'train.amp' is float16 on GPUs; set it false for cpu contexts")
        devices = self.worker.num_workers * len(self.ctx)
        if t.batch_size % devices:
            raise ConfigError(f"'train.batch_size' ({t.batch_size}) is the global batch: it "
                              f"must be divisible by workers x contexts ({devices})")

    def _build_data_and_model(self) -> None:
        cfg = self.cfg
        self.size = base_size(cfg)
        self.train_set = build_dataset(cfg, "train")
        self.val_set, self.classes = val_set(cfg)
        self.net = initialized_model(cfg, self.classes, self.ctx)
        self.sampler = EpochSampler(len(self.train_set), cfg.seed, self.worker.rank,
                                    self.worker.num_workers)
        self.batch_size = cfg.train.batch_size // self.worker.num_workers  # this worker's share
        anchors = ssd_anchors(self.net, self.size, self.ctx[0])  # also fixes every shape
        distributed = self.worker.kvstore is not None
        self.stats_sync = RunningStatsSync(self.net, self.worker) if distributed else None
        self.stop_vote = StopVote(self.worker) if distributed else None
        self.loader = train_loader(self.train_set, anchors, Preprocess.from_config(cfg),
                                   self.batch_size, cfg.data.num_workers, self.sampler,
                                   cfg.data.max_expand, cfg.data.bad_images)
        self.iters_per_epoch = self.sampler.shard_length // self.batch_size

    def _build_optimizer(self) -> None:
        t = self.cfg.train
        lr, warmup = scaled_lr(t)
        self.schedule = Schedule(lr, t.epochs * self.iters_per_epoch, self.iters_per_epoch,
                                 warmup, t.lr_mode, tuple(t.lr_steps), t.lr_factor)
        no_decay_params(self.net, t.norm_wd)
        if t.amp:
            from mxnet.contrib import amp
            amp.init(fp32_ops=amp_fp32_ops())
        # Distributed: the servers sum gradients and every worker runs the same update, so
        # the optimizer state stays on the workers and checkpoints can hold it.
        kvstore = self.worker.kvstore or (t.kvstore if len(self.ctx) > 1 else None)
        self.trainer = gluon.Trainer(self.net.collect_params(), "sgd",
                                     {"learning_rate": self.schedule(0), "wd": t.wd,
                                      "momentum": t.momentum}, kvstore=kvstore,
                                     update_on_kvstore=False if self.worker.kvstore else None)
        if t.amp:
            amp.init_trainer(self.trainer)

    def resume(self) -> None:
        """Continue from train.resume: 'auto' (newest valid checkpoint in the run) or a file."""
        spec = self.cfg.train.resume
        path = find_resume(self.out_dir, self.cfg.name) if spec == "auto" else spec or None
        if path is None:
            return
        meta = load_checkpoint(path, self.net, self.trainer, self.ctx, self.average)
        self.epoch, self.iteration = meta["epoch"], meta["iteration"]
        self.best_map = meta.get("best_map", -1.0)
        log.info("resumed from %s: epoch %d, iteration %d", path, self.epoch, self.iteration)

    def fit(self) -> Optional[EvalResult]:
        """Train to cfg.train.epochs; returns the last validation result."""
        if self.worker.is_chief:
            save_config(self.cfg, os.path.join(self.out_dir, "config.yaml"))
        self.resume()
        sink = TensorBoardSink(os.path.join(self.out_dir, "tensorboard"), self.iteration,
                               eval_metric(self.cfg)) \
            if self.cfg.train.tensorboard and self.worker.is_chief else None
        metrics = MetricsLog(self.out_dir, self.iteration, sink) if self.worker.is_chief \
            else None
        self._announce()
        if self.iteration == 0 and self.worker.is_chief:
            self.picture_first_batch()
        self.timer = (time.monotonic(), self.iteration)  # the ETA's rate: this process's
        result = None
        try:
            while self.epoch < self.cfg.train.epochs:
                self.train_one_epoch(metrics)
                validated = self.end_epoch(metrics)
                result = validated or result
        except _StopNow:
            self.stopped()
        except KeyboardInterrupt:
            if self.worker.is_chief:
                path = self.save("last", with_states=True)
                log.info("interrupted at iteration %d; checkpoint %s (resume: auto continues)",
                         self.iteration, path)
            raise
        finally:
            if sink is not None:
                sink.close()
        if self.worker.kvstore is not None:
            log.info("rank %d done at iteration %d; parameters sha256 %s", self.worker.rank,
                     self.iteration, params_checksum(self.net))
        return result

    def _announce(self) -> None:
        """The run's first lines: what trains, on what, with which schedule and recipe."""
        cfg, t = self.cfg, self.cfg.train
        where = ",".join(map(str, self.ctx))
        if self.worker.kvstore is not None:
            where += (f" x {self.worker.num_workers} workers ({t.kvstore}, this is rank "
                      f"{self.worker.rank}, batch {self.batch_size} of {t.batch_size})")
        total = t.epochs * self.iters_per_epoch
        log.info("training %s (%s) on %s: %d images, %d iterations/epoch, %d epochs "
                 "(%d iterations), output %s", cfg.model.name, cfg.model.norm, where,
                 len(self.train_set), self.iters_per_epoch, t.epochs, total, self.out_dir)
        schedule = f"{t.lr_mode}" + (f" steps at epochs {list(t.lr_steps)} x{t.lr_factor:g}"
                                     if t.lr_mode == "step" else "")
        base = t.base_batch_size or t.batch_size
        scaled = "" if base == t.batch_size else \
            f" = train.lr {t.lr:g} x batch {t.batch_size} / base {base}"
        log.info("lr %g%s (%s, warmup %d iterations); batch %d global, %d per device "
                 "(%d worker(s) x %d context(s))", self.schedule.lr, scaled, schedule,
                 self.schedule.warmup_iters, t.batch_size, self.batch_size // len(self.ctx),
                 self.worker.num_workers, len(self.ctx))
        if self.schedule.warmup_iters >= total:
            log.warning("train.warmup_iters (%d iterations here) is not shorter than the run "
                        "(%d): the lr never reaches %g", self.schedule.warmup_iters, total,
                        self.schedule.lr)
        for kind, recipe in recipe_summary(self.net).items():
            log.info("recipe %s: %s", kind, recipe)
        log.info("NoBiasBatchNorm: %s", impl_summary(self.net))
        log.info("OpenMP threads %s; CPU %s", omp_threads(), cpu_info().describe())

    def picture_first_batch(self) -> None:
        """train_batch.jpg: the first batch (up to 16 images) as the model gets it, after
        augmentation, with its boxes: what the data and augmentation really give."""
        cfg = self.cfg
        self.sampler.set_epoch(0)
        samples = augmented_batch(self.train_set, Preprocess.from_config(cfg), self.sampler,
                                  min(self.batch_size, 16), cfg.data.max_expand,
                                  cfg.data.bad_images)
        save_image(os.path.join(self.out_dir, "train_batch.jpg"), labelled_grid(
            samples, self.classes, title=f"the first training batch, augmented "
                                         f"({len(samples)} of {self.batch_size} images)"))

    def end_epoch(self, metrics: Optional[MetricsLog]) -> Optional[EvalResult]:
        """Close the epoch just trained: norm statistics agreed, a stop honoured; on rank 0,
        validation when due and checkpoints. Returns the validation result, if one ran."""
        t = self.cfg.train
        self.epoch += 1
        mx.nd.waitall()  # norm statistics written in backward operators land (portable.py)
        if self.stats_sync is not None:
            self.stats_sync()
        if self.epoch < t.epochs:
            self.check_stop()
        if not self.worker.is_chief:
            return None
        last = self.epoch == t.epochs
        result = self.validate(metrics) if self.epoch % t.val_interval == 0 or last else None
        improved = result is not None and result.value > self.best_map
        if improved:
            self.best_map = result.value
        self.save("last", with_states=True)
        # the same weights under other names: hard links, no second copy on disk
        if improved:
            self.name_checkpoint("last", "best", with_states=False)
        if self.epoch % t.save_interval == 0 or last:
            self.name_checkpoint("last", f"{self.epoch:04d}", with_states=True)
        metrics.draw()
        return result

    def check_stop(self) -> None:
        """Raise _StopNow if this process, or in a distributed run any worker, got a signal."""
        asked = self.stop.requested
        if self.stop_vote is not None:
            asked = self.stop_vote(asked)
        if asked:
            raise _StopNow

    def stopped(self) -> None:
        """Save `-last` where training stopped, then raise Preempted. Every worker has the same
        weights and optimizer state, so every worker can resume from rank 0's checkpoint (as
        from a `checkpoint_iters` one, with rank 0's norm statistics of the epoch so far)."""
        path = self.save("last", with_states=True) if self.worker.is_chief else None
        signum = self.stop.signum or signal.SIGTERM  # a worker stopped by another's signal
        log.info("stopped by %s at iteration %d (epoch %d); checkpoint %s",
                 signal.Signals(signum).name, self.iteration, self.epoch,
                 path or "written by rank 0")
        raise Preempted(signum, self.iteration, path)

    def train_one_epoch(self, metrics: Optional[MetricsLog]) -> None:
        """Train the rest of the current epoch (all of it unless resumed mid-epoch)."""
        t = self.cfg.train
        done = self.iteration - self.epoch * self.iters_per_epoch
        self.sampler.set_epoch(self.epoch, skip=done * self.batch_size)
        self.net.hybridize(static_alloc=True, static_shape=True)  # retrace in training mode
        meter = _Meter()
        bar = tqdm(self.loader, desc=f"epoch {self.epoch + 1}/{t.epochs}", unit="it",
                   leave=False, disable=None, initial=done, total=self.iters_per_epoch)
        for batch in bar:
            lr = self.schedule(self.iteration)
            self.trainer.set_learning_rate(lr)
            meter.add(self.step(batch), batch[0].shape[0])
            self.iteration += 1
            if not self.stepped:
                self.stepped = True
                self.on_first_step()
            if self.iteration % t.log_interval == 0 or \
                    self.iteration % self.iters_per_epoch == 0:
                self._log_progress(meter, lr, metrics, bar)
            if self.iteration % self.iters_per_epoch:  # epoch ends are end_epoch()'s
                self.check_stop()
                if t.checkpoint_iters and self.iteration % t.checkpoint_iters == 0 and \
                        self.worker.is_chief:
                    self.save("last", with_states=True)
        bar.close()

    def _log_progress(self, meter: _Meter, lr: float, metrics: Optional[MetricsLog],
                      bar) -> None:
        """Log and record the losses and speed since the last report; reset the meter."""
        loss, cls_loss, box_loss = meter.means()
        speed = meter.images_per_s() * self.worker.num_workers  # each worker's share as long
        meter.reset()
        if metrics is None:  # other workers: rank 0 speaks for the run
            return
        epoch = self.iteration / self.iters_per_epoch
        started, first = self.timer
        left = eta(self.iteration - first, self.cfg.train.epochs * self.iters_per_epoch - first,
                   time.monotonic() - started)
        log.info("epoch %.2f iter %d loss %.4f (cls %.4f box %.4f) lr %.5g %.1f img/s, ETA %s",
                 epoch, self.iteration, loss, cls_loss, box_loss, lr, speed,
                 "?" if left is None else duration(left))
        metrics.add(epoch=epoch, iteration=self.iteration, loss=loss, cls_loss=cls_loss,
                    box_loss=box_loss, lr=lr, images_per_s=speed)
        bar.set_postfix(loss=f"{loss:.3f}")

    def step(self, batch) -> np.ndarray:
        """One SGD step on a batch split over the contexts; returns [loss, cls, box] means."""
        data, cls_targets, box_targets = split_batch(batch, self.ctx)
        with autograd.record():
            cls_preds, box_preds = [], []
            for x in data:
                cls_pred, box_pred, _ = self.net(x)
                cls_preds.append(cls_pred)
                box_preds.append(box_pred)
            total, cls_loss, box_loss = self.loss_fn(cls_preds, box_preds, cls_targets,
                                                     box_targets)
            if self.cfg.train.amp:
                from mxnet.contrib import amp
                with amp.scale_loss(total, self.trainer) as scaled:
                    autograd.backward(scaled)
            else:
                autograd.backward(total)
        values = np.array([sum(float(v.sum().asscalar()) for v in part)
                           for part in (total, cls_loss, box_loss)])
        if not np.all(np.isfinite(values)):
            raise TrainingDiverged(
                f"loss is not finite at iteration {self.iteration + 1} (epoch {self.epoch + 1}): "
                f"loss {values[0]}, cls {values[1]}, box {values[2]}; the last checkpoint is "
                f"intact; lower train.lr or add train.warmup_iters")
        self.trainer.step(self.worker.num_workers)  # servers sum the workers' mean gradients
        if self.average is not None:
            self.average.update(self.iteration)
        return values

    def check_finite(self) -> None:
        """Stop a run whose weights or norm statistics hold NaN or infinity (a loss can stay
        finite while a running variance overflows): it is never saved, as best or last."""
        bad = first_non_finite(self.net)
        if bad is not None:
            raise TrainingDiverged(
                f"{bad} is not finite at iteration {self.iteration} (epoch {self.epoch + 1}); "
                f"nothing of it is saved and the last checkpoint is intact; lower train.lr or "
                f"add train.warmup_iters")

    def validate(self, metrics: MetricsLog) -> EvalResult:
        self.check_finite()
        cfg = self.cfg
        pictured = cfg.eval.num_images if metrics.sink is not None else 0
        settings = EvalSettings(cfg.eval.batch_size, cfg.data.num_workers, eval_metric(cfg),
                                pictured)
        with self.average.swapped() if self.average is not None else nullcontext():
            result = evaluate(net_predictor(self.net), self.val_set, self.classes, self.ctx,
                              Preprocess.from_config(cfg), settings, progress=True)
        log.info("epoch %d val %s %.4f", self.epoch, result.metric, result.value)
        metrics.add(epoch=float(self.epoch), iteration=self.iteration, val_map=result.value)
        if result.samples:
            metrics.sink.add_picture("val/detections", detections_picture(
                result, self.val_set, self.classes, cfg.eval.score_thresh), self.iteration)
        return result

    def name_checkpoint(self, saved: str, tag: str, with_states: bool) -> str:
        """The checkpoint just saved as `saved`, also as `tag` (checkpoint.link_checkpoint)."""
        prefix = os.path.join(self.out_dir, f"{self.cfg.name}-")
        return link_checkpoint(prefix + saved, prefix + tag, with_states)

    def save(self, tag: str, with_states: bool) -> str:
        self.check_finite()
        meta = {"epoch": self.epoch, "iteration": self.iteration, "best_map": self.best_map,
                "classes": self.classes, "config": self.cfg.dump()}
        return save_checkpoint(os.path.join(self.out_dir, f"{self.cfg.name}-{tag}"), self.net,
                               self.trainer if with_states else None, meta, self.average)


def train(cfg: CfgNode, overwrite: bool = False) -> Optional[EvalResult]:
    """Run the training a config describes; everything lands in cfg.output_dir.

    A directory that holds another run is refused unless train.resume is 'auto' or
    `overwrite` removes that run first (run_dir.claim); a start that fails before its first
    step leaves the directory as it was (run_dir.StartGuard). The run records its paths
    absolute (config.with_absolute_paths).
    """
    cfg = with_absolute_paths(cfg)
    worker = connect(cfg.train.kvstore)
    if not worker.is_chief:  # rank 0 alone writes in the run directory: it holds and cleans it
        make_folder(cfg.output_dir)
        setup_logging(None)
        with StopRequest() as stop:
            return Trainer(cfg, worker, stop).fit()
    with StartGuard(cfg.output_dir) as guard, RunLock(cfg.output_dir):
        removed = claim(cfg.output_dir, cfg.train.resume, overwrite)
        handler = setup_logging(cfg.output_dir)
        try:
            if removed:
                log.info("--overwrite: removed the previous run's %s", ", ".join(removed))
            remove_stale_temps(cfg.output_dir)
            # installed before the loader's worker processes fork, which inherit it: a signal
            # to the whole process group (Ctrl-C, Slurm) does not kill them mid-epoch
            with StopRequest() as stop:
                return Trainer(cfg, worker, stop, on_first_step=guard.started).fit()
        finally:
            log.removeHandler(handler)
            handler.close()
