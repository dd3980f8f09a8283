"""The training recipe: SSD multibox loss, SGD with warmup and cosine/step decay, validation,
atomic checkpoints with optimizer state, resume, and the run directory's logs and curves."""
from __future__ import annotations

import logging
import math
import os
import random
import signal
import sys
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import mxnet as mx
import numpy as np
from gluoncv.loss import SSDMultiBoxLoss
from mxnet import autograd, gluon
from tqdm import tqdm
from yacs.config import CfgNode

from ssd_nobias.model import native
from ssd_nobias.atomic import make_folder, remove_stale_temps
from ssd_nobias.model.checkpoint import (find_resume, first_non_finite, link_checkpoint,
                                         load_checkpoint, save_checkpoint)
from ssd_nobias.config import base_size, save_config, scaled_lr, with_absolute_paths
from ssd_nobias.devices import contexts
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.datasets import build_dataset, val_set
from ssd_nobias.data.loaders import EpochSampler, split_batch, train_loader
from ssd_nobias.engine.hooks import Hook, default_hooks, running
from ssd_nobias.engine.distributed import (RunningStatsSync, StopVote, Worker, connect,
                                           params_checksum)
from ssd_nobias.errors import ConfigError, UserError
from ssd_nobias.evaluation.evaluate import EvalResult
from ssd_nobias.machine import cpu_info, omp_threads
from ssd_nobias.model.ssd import (CONV_INIT, build_model, recipe_summary, ssd_anchors,
                                  with_anchor_sizes)
from ssd_nobias.model.norm import impl_summary
from ssd_nobias.engine.preemption import Preempted, RunLock, StopRequest
from ssd_nobias.engine.run_dir import StartGuard, claim

log = logging.getLogger("ssd_nobias")


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


class Trainer:
    """One run: model, data, optimizer and run directory built from a config."""

    def __init__(self, cfg: CfgNode, worker: Optional[Worker] = None,
                 stop: Optional[StopRequest] = None,
                 on_first_step: Callable[[], None] = lambda: None,
                 hooks: Sequence[Hook] = ()):
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
        self.epoch, self.iteration, self.best_map = 0, 0, -1.0
        self.stepped, self.bar = False, None
        self.result: Optional[EvalResult] = None  # the last validation's (EvalHook)
        self.improved = False  # whether this epoch's validation beat best_map (EvalHook)
        self.average = None  # a WeightAverage, when WeightAverageHook keeps one
        self.hooks = running([*default_hooks(self), *hooks], self.worker.is_chief)

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
        self._announce()
        for hook in self.hooks:
            hook.before_train(self)
        try:
            while self.epoch < self.cfg.train.epochs:
                self.train_one_epoch()
                self.end_epoch()
        except _StopNow:
            self.stopped()
        except KeyboardInterrupt:
            if self.worker.is_chief:
                path = self.save("last", with_states=True)
                log.info("interrupted at iteration %d; checkpoint %s (resume: auto continues)",
                         self.iteration, path)
            raise
        finally:
            for hook in self.hooks:
                hook.after_train(self)
        if self.worker.kvstore is not None:
            log.info("rank %d done at iteration %d; parameters sha256 %s", self.worker.rank,
                     self.iteration, params_checksum(self.net))
        return self.result

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

    def end_epoch(self) -> None:
        """Close the epoch just trained: norm statistics agreed, a stop honoured, then the
        hooks (validation, checkpoints, ... on rank 0)."""
        self.epoch += 1
        mx.nd.waitall()  # norm statistics written in backward operators land (portable.py)
        if self.stats_sync is not None:
            self.stats_sync()
        if self.epoch < self.cfg.train.epochs:
            self.check_stop()
        for hook in self.hooks:
            hook.after_epoch(self)

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

    def train_one_epoch(self) -> None:
        """Train the rest of the current epoch (all of it unless resumed mid-epoch)."""
        t = self.cfg.train
        done = self.iteration - self.epoch * self.iters_per_epoch
        self.sampler.set_epoch(self.epoch, skip=done * self.batch_size)
        self.net.hybridize(static_alloc=True, static_shape=True)  # retrace in training mode
        self.bar = tqdm(self.loader, desc=f"epoch {self.epoch + 1}/{t.epochs}", unit="it",
                        leave=False, disable=None, initial=done, total=self.iters_per_epoch)
        for batch in self.bar:
            self.trainer.set_learning_rate(self.schedule(self.iteration))
            self.step_losses, self.step_images = self.step(batch), batch[0].shape[0]
            self.iteration += 1
            if not self.stepped:
                self.stepped = True
                self.on_first_step()
            for hook in self.hooks:
                hook.after_step(self)
            if self.iteration % self.iters_per_epoch:  # epoch ends are end_epoch()'s
                self.check_stop()
        self.bar.close()
        self.bar = None

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

    def averaged(self):
        """A context in which the net holds the weight average, if the run keeps one."""
        return self.average.swapped() if self.average is not None else nullcontext()

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


def train(cfg: CfgNode, overwrite: bool = False, hooks: Sequence[Hook] = ()
          ) -> Optional[EvalResult]:
    """Run the training a config describes; everything lands in cfg.output_dir. `hooks`
    (engine/hooks.py) run after the run's own at each point of the loop.

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
            return Trainer(cfg, worker, stop, hooks=hooks).fit()
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
                return Trainer(cfg, worker, stop, on_first_step=guard.started,
                               hooks=hooks).fit()
        finally:
            log.removeHandler(handler)
            handler.close()
