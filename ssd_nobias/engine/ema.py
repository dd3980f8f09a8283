"""An exponential moving average of a net's parameters during training.

Every parameter (weights, scales and norm statistics alike) keeps a shadow copy updated after
each optimizer step, shadow = d * shadow + (1 - d) * value, with d = min(decay, (1 + n) /
(10 + n)) at iteration n so that the first weights, which training leaves far behind, fade
fast. Validation and the checkpoints' .params files see the averaged weights (what evaluation,
export and detection read); training goes on with its own, which checkpoints keep beside them
for resuming (model/checkpoint.py). Averaging is linear, so a NoBiasBatchNorm net's average is
bias-free as well."""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator

import mxnet as mx
from mxnet import gluon


class WeightAverage:
    """The averaged parameters of `net` (shadows on the net's first context)."""

    def __init__(self, net: gluon.Block, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.params = list(net.collect_params().values())
        self.shadow: Dict[str, mx.nd.NDArray] = {}
        self.take(net)

    def take(self, net: gluon.Block) -> None:
        """Start the average from the net's current parameters."""
        self.shadow = {p.name: _value(p).copy() for p in self.params}

    def update(self, iteration: int) -> None:
        """Fold the parameters after step `iteration` (counted from 0) into the average."""
        d = min(self.decay, (1.0 + iteration) / (10.0 + iteration))
        for p in self.params:
            shadow = self.shadow[p.name]
            shadow[:] = d * shadow + (1.0 - d) * _value(p)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """Within: the net's parameters, on every context, are the averaged ones; after, each
        context's own values are back (norm statistics differ between contexts)."""
        kept = {p.name: [a.copy() for a in p.list_data()] for p in self.params}
        for p in self.params:
            for a in p.list_data():
                a[:] = self.shadow[p.name].as_in_context(a.context)
        try:
            yield
        finally:
            for p in self.params:
                for a, value in zip(p.list_data(), kept[p.name]):
                    a[:] = value


def _value(p: gluon.Parameter) -> mx.nd.NDArray:
    """A parameter's value on its first context; norm statistics, which each context keeps
    for its own share of the batch, averaged over the contexts (as checkpoints store them)."""
    data = p.list_data()
    if p.grad_req != "null" or len(data) == 1:
        return data[0]
    return mx.nd.add_n(*[a.as_in_context(data[0].context) for a in data]) / len(data)
