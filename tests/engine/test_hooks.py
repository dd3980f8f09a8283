"""The trainer's extension points (engine/hooks.py): a user's hook sees every point of the loop
after the run's own hooks, runs to the end however the run ends, and PreciseBN is one hook."""
import json
import os

import mxnet as mx
import pytest

from conftest import DEMO_CONFIG, make_tiny_data, tiny_overrides
from ssd_nobias.config import load_config
from ssd_nobias.engine.hooks import CheckpointHook, EvalHook, Hook, MetricsHook, running
from ssd_nobias.engine.precise_bn import recalibrate, training_batches
from ssd_nobias.engine.train import Trainer, train
from ssd_nobias.runtime.predictors import load_trained


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory, "hooks", train=8, val=2, seed=2)


def tiny(data, out, **values):
    return load_config(DEMO_CONFIG, tiny_overrides(data, out, "h", **{
        "train.epochs": 2, "train.log_interval": 1, "train.val_interval": 1, "eval.batch_size": 2,
        **values}))


class Recorder(Hook):
    """What a user's hook sees at each point: the iteration, and at epoch ends the epoch of
    the checkpoint the run's own hooks wrote just before."""

    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def before_train(self, trainer):
        self.calls.append(("before_train", trainer.iteration))

    def after_step(self, trainer):
        self.calls.append(("after_step", trainer.iteration))
        if trainer.iteration == self.stop_at:
            raise KeyboardInterrupt

    def after_epoch(self, trainer):
        with open(os.path.join(trainer.out_dir, "h-last.json")) as f:
            saved = json.load(f)["epoch"]
        self.calls.append(("after_epoch", trainer.epoch, saved, trainer.result is not None))

    def after_train(self, trainer):
        self.calls.append(("after_train", trainer.iteration))


def test_a_users_hook_sees_each_point_of_the_loop_after_the_runs_own(data, tmp_path):
    recorder = Recorder()
    result = train(tiny(data, tmp_path / "run"), hooks=[recorder])
    assert recorder.calls == [
        ("before_train", 0), ("after_step", 1), ("after_step", 2),
        ("after_epoch", 1, 1, True),  # validated and checkpointed before it runs
        ("after_step", 3), ("after_step", 4), ("after_epoch", 2, 2, True), ("after_train", 4)]
    assert result is not None and result.metric == "voc07"


def test_after_train_runs_when_a_run_is_interrupted(data, tmp_path):
    recorder = Recorder(stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(data, tmp_path / "run"), hooks=[recorder])
    assert recorder.calls[-2:] == [("after_step", 3), ("after_train", 3)]
    with open(tmp_path / "run" / "h-last.json") as f:
        assert json.load(f)["iteration"] == 3  # the interrupted run's checkpoint


def test_workers_other_than_rank_0_run_only_the_hooks_that_are_not_chief_only():
    mine = Recorder()
    hooks = [EvalHook(), CheckpointHook(), MetricsHook(), mine]
    assert running(hooks, chief=True) == hooks
    assert running(hooks, chief=False) == [mine]


@pytest.mark.slow
def test_precise_bn_leaves_every_validated_and_saved_model_with_recomputed_statistics(
        data, tmp_path):
    """With train.precise_bn_batches, the last checkpoint's norm statistics are those of its
    weights over the hook's batches: recomputing them over the same batches changes nothing;
    without it they are the training's running averages, far from that."""
    changes = {}
    for batches in (0, 2):
        cfg = tiny(data, tmp_path / f"run{batches}", **{"train.precise_bn_batches": batches})
        train(cfg)
        net, _ = load_trained(cfg, str(tmp_path / f"run{batches}" / "h-last.params"),
                              [mx.cpu()])
        seed = cfg.seed * 1000 + cfg.train.epochs  # the hook's batches after the last epoch
        changes[batches] = max(recalibrate(net, training_batches(cfg, 2, seed), 2).values())
    assert changes[2] < 1e-4 < 1e-2 < changes[0]
    log = (tmp_path / "run2" / "train.log").read_text()
    assert log.count("PreciseBN: norm statistics over 2 training batches") == 2


def test_a_trainer_built_with_hooks_lists_them_after_its_own(data, tmp_path):
    mine = Recorder()
    trainer = Trainer(tiny(data, tmp_path / "run", **{"train.ema_decay": 0.9}), hooks=[mine])
    kinds = [type(h).__name__ for h in trainer.hooks]
    assert kinds == ["WeightAverageHook", "EvalHook", "CheckpointHook", "MetricsHook",
                     "Recorder"]
    assert trainer.average is not None
