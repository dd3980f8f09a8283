"""Checkpoints from elsewhere run no code: optimizer state is unpickled only when it names
nothing but what MXNet's SGD state holds, and a CRC sidecar (which whoever writes the file
writes too) is no protection it relies on."""
import json
import os
import pickle
import zlib

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.errors import DataError
from ssd_nobias.model.checkpoint import load_checkpoint, save_checkpoint


def net_and_trainer():
    net = mx.gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Normal(1.0))
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd",
                               {"learning_rate": 0.1, "momentum": 0.9})
    return net, trainer


def step(net, trainer):
    with mx.autograd.record():
        loss = (net(mx.nd.ones((2, 4))) ** 2).sum()
    loss.backward()
    trainer.step(2)


class Payload:
    """What a hostile .states file carries: unpickling it creates `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_momentum_comes_back_and_a_hostile_states_file_runs_nothing(tmp_path):
    net, trainer = net_and_trainer()
    step(net, trainer)
    os.makedirs(tmp_path / "run")
    prefix = str(tmp_path / "run" / "r-last")
    save_checkpoint(prefix, net, trainer, {"epoch": 1, "iteration": 1})
    momentum = {k: v.asnumpy() for k, v in trainer._updaters[0].states.items()}

    fresh, fresh_trainer = net_and_trainer()
    load_checkpoint(prefix + ".params", fresh, fresh_trainer, [mx.cpu()])
    restored = fresh_trainer._updaters[0].states
    assert set(restored) == set(momentum) and any(np.abs(m).max() > 0 for m in momentum.values())
    for k, m in momentum.items():
        np.testing.assert_array_equal(restored[k].asnumpy(), m)
    assert fresh_trainer.optimizer.momentum == 0.9

    marker = tmp_path / "ran"
    hostile = pickle.dumps(({0: None}, Payload(str(marker))))
    with open(prefix + ".states", "wb") as f:
        f.write(hostile)
    with open(prefix + ".json") as f:
        meta = json.load(f)
    meta["states"]["crc32"] = zlib.crc32(hostile)  # the attacker writes the sidecar too
    with open(prefix + ".json", "w") as f:
        json.dump(meta, f)
    with pytest.raises(DataError, match=r"r-last\.states. is refused: it names .*open, which"):
        load_checkpoint(prefix + ".params", fresh, fresh_trainer, [mx.cpu()])
    assert not marker.exists()

    (tmp_path / "elsewhere.states").write_bytes(hostile)
    for name in ("../elsewhere.states", str(tmp_path / "elsewhere.states")):
        meta["states"]["file"] = name
        with open(prefix + ".json", "w") as f:
            json.dump(meta, f)
        with pytest.raises(DataError, match="no matching .json sidecar"):
            load_checkpoint(prefix + ".params", fresh, fresh_trainer, [mx.cpu()])
    assert not marker.exists()
