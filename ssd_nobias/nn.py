"""NoBiasBatchNorm: a BatchNorm that folds into the preceding conv as a weight with no bias."""
from __future__ import annotations

from typing import Callable, Union

from mxnet.gluon import nn

from . import native


class NoBiasBatchNorm(nn.BatchNorm):
    """Batch normalization without a shift: the mean is never subtracted, there is no beta.

    training:  ``y = gamma * x / sqrt(m2 + eps)``, ``m2`` the batch's per-channel mean of ``x**2``
    (uncentered second moment), and ``running_var = momentum * running_var + (1 - momentum) * m2``
    updated in the forward pass on every backend.
    inference (or ``use_global_stats=True``): ``y = gamma * x / sqrt(running_var + eps)``, exactly
    what the conv gives once this layer is folded into it: ``w' = w * gamma / sqrt(running_var + eps)``
    and no bias.

    Parameters: ``gamma`` (learned; fixed to 1 with ``scale=False``, PyTorch's ``affine=False``),
    ``running_mean`` (kept so params files look like any BatchNorm's; always exactly 0.0) and
    ``running_var`` (the running uncentered second moment). ``momentum`` follows MXNet: the weight
    of the old value, 0.9 here is PyTorch's ``momentum=0.1``.

    The train/inference switch happens inside the graph at run time, so a hybridized block follows
    ``autograd`` modes in any order, as MXNet's own BatchNorm does.

    ``fuse_relu=True`` applies ReLU in the same operator (as Gluon's ``BatchNormReLU``), which
    saves a pass over the activations in each direction.
    """

    def __init__(self, axis: int = 1, momentum: float = 0.9, epsilon: float = 1e-5,
                 center: bool = False, scale: bool = True, use_global_stats: bool = False,
                 gamma_initializer="ones", running_variance_initializer="ones",
                 in_channels: int = 0, fuse_relu: bool = False, **kwargs):
        if center:
            raise ValueError("NoBiasBatchNorm has no beta: center=True is not supported")
        if axis != 1:
            raise ValueError(f"NoBiasBatchNorm normalizes axis 1 (NCHW), got axis={axis}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        super().__init__(axis=1, momentum=momentum, epsilon=epsilon, center=False, scale=scale,
                         use_global_stats=use_global_stats, gamma_initializer=gamma_initializer,
                         running_variance_initializer=running_variance_initializer,
                         in_channels=in_channels, **kwargs)
        # BatchNorm always creates beta; a parameter no computation uses would be unexpected
        # in params files and unresolvable by deferred shape inference, so it goes.
        beta = self._reg_params.pop("beta")
        self.params._params.pop(beta.name)
        del self.beta
        self.fuse_relu = fuse_relu
        native.load()

    def hybrid_forward(self, F, x, gamma, running_mean, running_var):
        # Dropout is the identity in inference and gives exactly 0 or 2 in training, so this
        # flag is 1 in training and 0 in inference, decided when the graph runs.
        one = F.ones_like(F.slice_axis(running_var, axis=0, begin=0, end=1))
        is_train = F.BlockGrad(F.Dropout(one, p=0.5) != one)
        out = F.nobias_batch_norm(x, gamma, running_mean, running_var, is_train, name="fwd",
                                  eps=self._kwargs["eps"], momentum=self._kwargs["momentum"],
                                  use_global_stats=int(self._kwargs["use_global_stats"]),
                                  fix_gamma=int(self._kwargs["fix_gamma"]),
                                  relu=int(self.fuse_relu))
        return out[0]


NormLayer = Callable[..., nn.HybridBlock]
NORM_LAYERS = {"batchnorm": nn.BatchNorm, "nobias": NoBiasBatchNorm}


def get_norm_layer(norm: Union[str, NormLayer]) -> NormLayer:
    """Resolve a norm name from a config ('batchnorm' or 'nobias') or pass a class through."""
    if isinstance(norm, str):
        try:
            return NORM_LAYERS[norm]
        except KeyError:
            raise ValueError(f"unknown norm '{norm}': choose one of {sorted(NORM_LAYERS)}") from None
    if callable(norm):
        return norm
    raise TypeError(f"norm must be a name or a layer class, got {type(norm).__name__}")
