"""The weight average (engine/ema.py, train.ema_decay): its arithmetic, the swap validation
and checkpoints use, and a run with it that checkpoints the average and resumes exactly."""
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from ssd_nobias.engine.ema import WeightAverage
from ssd_nobias.engine.train import Trainer, train
from ssd_nobias.model.checkpoint import read_meta
from ssd_nobias.runtime.predictors import load_trained

from conftest import DEMO_CONFIG, make_tiny_data
from ssd_nobias.config import load_config


def dense(ctx):
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(3, in_units=2), gluon.nn.BatchNorm(in_channels=3))
    net.initialize(mx.init.Constant(1.0), ctx=ctx)
    return net


def test_the_average_folds_each_step_in_with_a_warm_decay():
    net = dense([mx.cpu()])
    average = WeightAverage(net, decay=0.5)
    weight = net[0].weight
    for iteration, value in ((0, 3.0), (1, 5.0), (40, 9.0)):
        before = average.shadow[weight.name].asnumpy()
        weight.set_data(mx.nd.full(weight.shape, value))
        average.update(iteration)
        d = min(0.5, (1 + iteration) / (10 + iteration))  # 0.1, 0.1818..., then 0.5
        np.testing.assert_allclose(average.shadow[weight.name].asnumpy(),
                                   d * before + (1 - d) * value, rtol=1e-6)
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(net, decay=1.0)


def test_the_swap_shows_the_average_on_every_context_and_gives_each_its_own_back():
    net = dense([mx.cpu(0), mx.cpu(1)])
    var = net[1].running_var
    for value, arr in zip((2.0, 4.0), var.list_data()):  # each context's own statistics
        arr[:] = value
    average = WeightAverage(net, decay=0.9)
    assert (average.shadow[var.name].asnumpy() == 3.0).all()  # their mean, as checkpoints
    average.shadow[net[0].weight.name][:] = 7.0
    with average.swapped():
        assert all((a.asnumpy() == 7.0).all() for a in net[0].weight.list_data())
        assert all((a.asnumpy() == 3.0).all() for a in var.list_data())
    assert [a.asnumpy()[0] for a in var.list_data()] == [2.0, 4.0]
    assert (net[0].weight.data(mx.cpu(1)).asnumpy() == 1.0).all()


@pytest.mark.slow
def test_a_run_checkpoints_its_average_and_resumes_exactly(tmp_path_factory, tmp_path,
                                                           monkeypatch):
    data = make_tiny_data(tmp_path_factory, "ema", train=8, val=2, seed=0)

    def cfg(out, *more):
        return load_config(DEMO_CONFIG, [
            f"data.root={data}", f"output_dir={out}", "name=e", "data.num_workers=0",
            "train.batch_size=4", "train.epochs=2", "train.warmup_iters=2",
            "train.val_interval=1", "train.save_interval=1", "eval.batch_size=2",
            "train.ema_decay=0.9", *more])

    straight = str(tmp_path / "straight")
    train(cfg(straight))
    last = os.path.join(straight, "e-last.params")
    meta = read_meta(last)
    assert meta["training"]["file"] == "e-last.training.params"
    averaged = {k: v.asnumpy() for k, v in mx.nd.load(last).items()}
    trained = {k: v.asnumpy() for k, v in mx.nd.load(
        os.path.join(straight, "e-last.training.params")).items()}
    assert averaged.keys() == trained.keys()
    assert any(not np.array_equal(averaged[k], trained[k]) for k in averaged)
    net, _ = load_trained(cfg(straight), last, [mx.cpu()])  # eval and export read the average

    real_step = Trainer.step

    def interrupted(self, batch):
        if self.iteration == 3:
            raise KeyboardInterrupt
        return real_step(self, batch)

    resumed = str(tmp_path / "resumed")
    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(resumed))
    monkeypatch.setattr(Trainer, "step", real_step)
    train(cfg(resumed, "train.resume=auto"))
    for name in ("e-last.params", "e-last.training.params"):
        want = mx.nd.load(os.path.join(straight, name))
        got = mx.nd.load(os.path.join(resumed, name))
        for k in want:
            np.testing.assert_array_equal(got[k].asnumpy(), want[k].asnumpy(), err_msg=k)
