"""Convolution weight reparametrizations that fold into the weight: no bias at deploy time.

Behind a ReLU a convolution's inputs are non-negative, so its output mean is roughly (input
mean) x (sum of the filter's weights). With no mean subtraction, no beta and no bias, a filter
whose sum is negative gives a mostly negative pre-activation and its ReLU dies. These modes
control that sum; each is a fixed function of the stored weight, evaluated once at export:

- ``plain``: the weight as stored (GluonCV's conv).
- ``centered``: each filter minus its own mean, so its sum is 0 (MABN's CenConv, weight
  standardization without the division): a common-mode input gives a zero-mean output.
- ``dc_positive``: each filter's mean replaced by its absolute value, so its sum is >= 0 and the
  high-pass part is kept; meant for 3x3 depthwise filters, where a zero sum would remove the
  channel's local level and nothing else carries it.
"""
from __future__ import annotations

from typing import Optional

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from ssd_nobias.config import WEIGHT_MODES



def effective_weight(F, weight, mode: str, fan_in: Optional[int] = None):
    """The weight the convolution computes with, for a stored (out, in, kh, kw) `weight`.

    F is mx.nd or mx.sym (then `fan_in`, in * kh * kw, must be given); the export evaluates it
    once with mx.nd. Filter means and their broadcast are matrix products with a ones vector:
    MXNet's CPU reductions (mean, a broadcast's backward) took 15 % of a training step.
    """
    if mode not in WEIGHT_MODES:
        raise ValueError(f"unknown weight mode '{mode}': choose one of {', '.join(WEIGHT_MODES)}")
    if mode == "plain":
        return weight
    if fan_in is None:
        fan_in = int(np.prod(weight.shape[1:]))
    flat = F.reshape(weight, shape=(0, -1))
    ones = F.ones_like(F.slice_axis(flat, axis=0, begin=0, end=1))  # (1, fan_in), no gradient
    mean = F.dot(flat, ones, transpose_b=True) / fan_in
    if mode == "dc_positive":  # subtract the mean, add back its absolute value
        mean = mean - F.abs(mean)
    return F.reshape_like(F.elemwise_sub(flat, F.dot(mean, ones)), weight)


class ReparamConv2D(nn.Conv2D):
    """A bias-free nn.Conv2D whose stored weight passes through `effective_weight` first.

    The parameter keeps Conv2D's name and shape, so checkpoints look like a plain conv's and
    GluonCV/Gluon weights load into it unchanged; `in_channels` must be given.
    """

    def __init__(self, channels: int, kernel_size: int, in_channels: int, mode: str = "plain",
                 **kwargs):
        if mode not in WEIGHT_MODES:
            raise ValueError(f"unknown weight mode '{mode}': choose one of "
                             f"{', '.join(WEIGHT_MODES)}")
        if in_channels <= 0:
            raise ValueError("ReparamConv2D needs in_channels")
        super().__init__(channels, kernel_size, in_channels=in_channels, use_bias=False,
                         **kwargs)
        self.mode = mode
        self._fan_in = int(np.prod(self.weight.shape[1:]))

    def hybrid_forward(self, F, x, weight, bias=None):
        return F.Convolution(x, effective_weight(F, weight, self.mode, self._fan_in),
                             name="fwd", **self._kwargs)

    def deploy_weight(self) -> mx.nd.NDArray:
        """The effective weight as one array (first context), what export folds."""
        return effective_weight(mx.nd, self.weight.data(), self.mode, self._fan_in)
