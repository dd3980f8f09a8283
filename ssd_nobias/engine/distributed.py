"""What a training process needs to know and do on MXNet's parameter-server kvstore.

Roles come from the DMLC_* environment variables that `scripts/launch_dist.py` (or any ps-lite
launcher) sets; a process started as scheduler or server never gets here: importing mxnet runs
its server loop and exits.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import mxnet as mx
import numpy as np
from mxnet import gluon

# kvstore keys for the norm statistics, clear of the Trainer's (one per parameter, from 0)
STATS_KEY_BASE = 1 << 20


@dataclass(frozen=True)
class Worker:
    """This process's place in the run: rank, number of workers, the kvstore (None locally)."""

    rank: int = 0
    num_workers: int = 1
    kvstore: Optional[mx.kvstore.KVStore] = None

    @property
    def is_chief(self) -> bool:
        """Rank 0 writes checkpoints and logs, and validates."""
        return self.rank == 0


def connect(kvstore: str) -> Worker:
    """Join the run a dist_* kvstore names (blocks until every process is up); else local."""
    if not kvstore.startswith("dist"):
        return Worker()
    kv = mx.kv.create(kvstore)
    print(f"ps-lite worker rank {kv.rank} of {kv.num_workers}", flush=True)  # launch.RANK_LINE
    return Worker(kv.rank, kv.num_workers, kv)


class RunningStatsSync:
    """Averages the norms' running statistics over contexts and workers, the same on all.

    Gradients keep the weights identical on every worker; the statistics are updated from each
    worker's own images, so they drift apart until averaged by a call (each call is a barrier,
    and so is construction, which registers one kvstore key per statistic).
    """

    def __init__(self, net: gluon.Block, worker: Worker):
        self.params = [p for _, p in sorted(net.collect_params().items())
                       if p.grad_req == "null"]
        self.kvstore, self.num_workers = worker.kvstore, worker.num_workers
        for i, param in enumerate(self.params):
            self.kvstore.init(STATS_KEY_BASE + i, mx.nd.zeros(param.shape, dtype=param.dtype))

    def __call__(self) -> None:
        for i, param in enumerate(self.params):
            local = sum(d.astype("float64") for d in param.list_data()) / len(param.list_data())
            self.kvstore.push(STATS_KEY_BASE + i, local.astype(param.dtype).as_in_context(mx.cpu()))
            total = mx.nd.zeros(param.shape, dtype=param.dtype)
            self.kvstore.pull(STATS_KEY_BASE + i, out=total)
            param.set_data(total / self.num_workers)


class StopVote:
    """Whether any worker was asked to stop, the same answer on every worker, so that all stop
    after the same step (one one-element push and pull per call: a barrier)."""

    KEY = STATS_KEY_BASE - 1

    def __init__(self, worker: Worker):
        self.kvstore = worker.kvstore
        self.kvstore.init(self.KEY, mx.nd.zeros((1,)))

    def __call__(self, mine: bool) -> bool:
        vote = mx.nd.array([1.0 if mine else 0.0])
        self.kvstore.pushpull(self.KEY, vote, out=vote)  # as the Trainer sums gradients
        return vote.asscalar() > 0


def params_checksum(net: gluon.Block) -> str:
    """sha256 over every parameter's bytes (first context), by name: equal means bitwise equal."""
    digest = hashlib.sha256()
    for name, param in sorted(net.collect_params().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(param.data(param.list_ctx()[0]).asnumpy()).tobytes())
    return digest.hexdigest()
