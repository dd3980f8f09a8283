"""NoBiasBatchNorm: a BatchNorm that folds into the preceding conv as a weight with no bias."""
from __future__ import annotations

import os
import warnings
from typing import Callable, Optional, Sequence, Union

import mxnet as mx
from mxnet.gluon import nn

from ssd_nobias.model import native, portable
from ssd_nobias.config import IMPLS

IMPL_ENV = "SSD_NOBIAS_IMPL"  # native | ops: what impl='auto' takes


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

    ``impl``: ``native`` (the compiled ``nobias_batch_norm`` operator: CPU contexts, and GPU
    contexts with MXNet's CUDA build, float16 data there too), ``ops`` (the same layer from
    MXNet's own operators, portable.py: any context) or ``auto``: $SSD_NOBIAS_IMPL if set, else
    native where it can run and ops elsewhere, with a warning saying why.
    """

    def __init__(self, axis: int = 1, momentum: float = 0.9, epsilon: float = 1e-5,
                 center: bool = False, scale: bool = True, use_global_stats: bool = False,
                 gamma_initializer="ones", running_variance_initializer="ones",
                 in_channels: int = 0, fuse_relu: bool = False, impl: str = "auto", **kwargs):
        if impl not in IMPLS:
            raise ValueError(f"impl '{impl}' is not one of {', '.join(IMPLS)}")
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
        self.impl = os.environ.get(IMPL_ENV, "auto") if impl == "auto" else impl
        if self.impl not in IMPLS:
            raise ValueError(f"${IMPL_ENV}='{self.impl}' is not one of native, ops")
        # Loaded now, not at the first forward: loading re-creates MXNet's operator functions,
        # which would undo an amp.init() run in between (native.load refuses that order).
        self._native_error = None if self.impl == "ops" else native.try_load()
        if self.impl == "native" and self._native_error:
            raise native.NativeUnavailable(self._native_error)

    def hybrid_forward(self, F, x, gamma, running_mean, running_var):
        # Dropout is the identity in inference and gives exactly 0 or 2 in training, so this
        # flag is 1 in training and 0 in inference, decided when the graph runs.
        one = F.ones_like(F.slice_axis(running_var, axis=0, begin=0, end=1))
        is_train = F.BlockGrad(F.Dropout(one, p=0.5) != one)
        settings = dict(eps=self._kwargs["eps"], momentum=self._kwargs["momentum"],
                        use_global_stats=bool(self._kwargs["use_global_stats"]),
                        fix_gamma=bool(self._kwargs["fix_gamma"]), relu=self.fuse_relu)
        if choose_impl(self.impl, self._contexts(), self._native_error) == "ops":
            return portable.nobias_batch_norm(F, x, gamma, running_mean, running_var, is_train,
                                              channels=self._channels(), **settings)
        if native.lib_api_only() or any(c.device_type == "gpu" for c in self._contexts()):
            # lib_api passes no `req` to a library compute (the plain CPU one and the GPU one),
            # which then overwrites gradients it should add to (grad_req='add'); behind a copy,
            # MXNet's own copy adds them. Hybridized, the copy is planned in place: no pass.
            x, gamma = F.identity(x), F.identity(gamma)
        out = F.nobias_batch_norm(x, gamma, running_mean, running_var, is_train, name="fwd",
                                  **{k: int(v) if isinstance(v, bool) else v
                                     for k, v in settings.items()})
        return out[0]

    def _channels(self) -> int:
        """The channel count, if known when the graph is traced (0 when deferred)."""
        return self.gamma.shape[0] if self.gamma.shape and self.gamma.shape[0] > 0 else 0

    def _contexts(self) -> list:
        """Where the parameters live; none yet when a symbol is traced before initialize()."""
        try:
            return self.running_var.list_ctx()
        except RuntimeError:
            return []


def choose_impl(impl: str, contexts: Sequence[mx.Context], native_error: Optional[str]) -> str:
    """'native' or 'ops' for a layer whose parameters live on `contexts`.

    native_error: why the compiled operator could not be built or loaded (None if it was).
    On GPU contexts the operator also needs its GPU compute (native.gpu_error).
    """
    gpus = [c for c in contexts if c.device_type == "gpu"]
    reason = native_error
    gpu_error = native.gpu_error() if gpus and reason is None else None
    if gpu_error is not None:
        reason = f"no GPU compute for {gpus[0]}: {gpu_error}"
    if impl == "native" and reason is not None:
        raise native.NativeUnavailable(
            f"the compiled nobias_batch_norm operator cannot run here ({reason}): use impl "
            f"'ops' or 'auto' (model.norm_impl)")
    if impl != "auto":
        return impl
    if reason is None:
        return "native"
    warnings.warn(f"NoBiasBatchNorm: the compiled operator cannot run here ({reason}); using "
                  f"the portable version built from MXNet operators (same results, slower; "
                  f"${IMPL_ENV}=ops chooses it without this warning)", stacklevel=2)
    return "ops"


class UncenteredBatchNorm(nn.BatchNorm):
    """Stock BatchNorm without its learned shift beta (center=False), keeping the running mean.

    The control that separates beta from the mean: folded, it still leaves a bias
    -gamma * mean / sqrt(var + eps), where NoBiasBatchNorm leaves none."""

    def __init__(self, **kwargs):
        if kwargs.pop("center", False):
            raise ValueError("UncenteredBatchNorm has no beta: center=True is not supported")
        super().__init__(center=False, **kwargs)


NormLayer = Callable[..., nn.HybridBlock]
NORM_LAYERS = {"batchnorm": nn.BatchNorm, "batchnorm_uncentered": UncenteredBatchNorm,
               "nobias": NoBiasBatchNorm}


def get_norm_layer(norm: Union[str, NormLayer]) -> NormLayer:
    """Resolve a norm name from a config (a NORM_LAYERS key) or pass a class through."""
    if isinstance(norm, str):
        try:
            return NORM_LAYERS[norm]
        except KeyError:
            raise ValueError(f"unknown norm '{norm}': choose one of {sorted(NORM_LAYERS)}") from None
    if callable(norm):
        return norm
    raise TypeError(f"norm must be a name or a layer class, got {type(norm).__name__}")


def impl_summary(net: nn.Block) -> str:
    """Which implementation the NoBiasBatchNorm layers of an initialized `net` run, in words
    (what the first lines of a run say)."""
    found = {}

    def visit(block):
        if isinstance(block, NoBiasBatchNorm):
            contexts = block._contexts()
            with warnings.catch_warnings():  # the layer warned of a fallback already
                warnings.simplefilter("ignore")
                impl = choose_impl(block.impl, contexts, block._native_error)
            if impl == "ops":
                what = "ops (portable, built from MXNet operators)"
            elif any(c.device_type == "gpu" for c in contexts):
                what = "native (compiled operator, NVRTC GPU kernels)"
            elif native.lib_api_only():
                what = f"native (compiled operator, plain NCHW: ${native.PLAIN_LAYOUT_ENV}=1)"
            else:
                what = "native (compiled operator on MKLDNN layouts)"
            found[what] = found.get(what, 0) + 1
        for child in block._children.values():
            visit(child)
    visit(net)
    if not found:
        return "none (no NoBiasBatchNorm layer)"
    return "; ".join(f"{what} x{count}" for what, count in found.items())
