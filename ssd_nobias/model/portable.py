"""NoBiasBatchNorm built from MXNet's own operators: it runs on any context, GPUs included, with
nothing compiled, and is the reference the compiled operator is checked against.

The same layer as the `nobias_batch_norm` operator: y = gamma * x / sqrt(s + eps), s the batch's
uncentered second moment m2 in training and running_var otherwise; running_var becomes
momentum * running_var + (1 - momentum) * m2 in training; running_mean stays exactly 0.
Gradients come from MXNet's autograd of these operators, so they are exact, and `grad_req='add'`
accumulates as for any stock operator. One difference: running_var is updated when the backward
pass runs (the way MXNet's own CPU BatchNorm updates its statistics), not in the forward pass,
so a training-mode forward without a backward leaves it alone. As for stock BatchNorm, that
backward operator writes statistics it declares as read, so MXNet's engine does not order later
reads after it: call mx.nd.waitall() before reading running_var (train.Trainer does at each
epoch's end, before validating and saving).
"""
from __future__ import annotations

from mxnet.contrib.amp import amp


def nobias_batch_norm(F, x, gamma, running_mean, running_var, is_train, eps: float,
                      momentum: float, use_global_stats: bool, fix_gamma: bool, relu: bool,
                      channels: int = 0):
    """The layer's output for NCHW `x`; `is_train` is a (1,) array, 1 in training, 0 otherwise.

    Under AMP, float16 data is normalized with float32 statistics, as stock BatchNorm is.
    With `channels` known, the per-channel sums run as a matrix product with a ones vector and
    the scaling as a 1x1 depthwise convolution (BLAS, MKLDNN and cuDNN kernels): MXNet's generic
    reductions (mean, a broadcast multiply's backward) made a CPU training step 4.7x slower.
    """
    under_amp = _amp_initialized()
    # AMP would run the convolution in float16, which MXNet's CPU convolution cannot
    channels = 0 if under_amp else channels
    if use_global_stats:
        second_moment = running_var + F.zeros_like(running_mean)  # every parameter in the graph
    else:
        # amp_cast only changes float16; without AMP the data has the parameters' type, and on
        # a CPU amp_cast fails for float64 (MKLDNN)
        wide = F.amp_cast(x, dtype="float32") if under_amp else x
        m2 = _mean_square(F, wide, channels)
        # exactly m2 in training and running_var in inference: the flag is 0.0 or 1.0
        second_moment = F.broadcast_add(
            F.broadcast_mul(is_train, m2) + F.broadcast_mul(1 - is_train, F.BlockGrad(running_var)),
            _statistics_update(F, m2, gamma, running_mean, running_var, momentum))
    scale = F.rsqrt(second_moment + eps)
    if not fix_gamma:
        scale = scale * gamma
    if channels:
        y = F.Convolution(x, F.reshape(scale, shape=(-1, 1, 1, 1)), kernel=(1, 1),
                          num_filter=channels, num_group=channels, no_bias=True)
    else:
        y = F.broadcast_mul(x, F.reshape(scale, shape=(1, -1, 1, 1)))
    return F.relu(y) if relu else y


def _mean_square(F, x, channels: int):
    """Per channel, the mean of x**2 over batch and positions."""
    squares = F.square(x)
    if not channels:
        return F.mean(squares, axis=1, exclude=True)
    rows = F.reshape(squares, shape=(-3, -3))  # (N * C, H * W)
    ones = F.ones_like(F.slice_axis(rows, axis=0, begin=0, end=1))  # (1, H * W), no gradient
    sums = F.reshape(F.dot(rows, ones, transpose_b=True), shape=(-1, channels))  # (N, C)
    return F.broadcast_div(F.mean(sums, axis=0), F.sum(ones, axis=1))


def _statistics_update(F, m2, gamma, running_mean, running_var, momentum: float):
    """Exactly 0.0; its backward pass sets running_var = momentum * running_var +
    (1 - momentum) * m2 in training and leaves running_mean at 0.0.

    Stock operators change no array in place except BatchNorm (its statistics) and the
    optimizers (which cannot be composed into a graph). A BatchNorm over the two samples
    +sqrt(m2) and -sqrt(m2) per channel sees mean exactly 0 and biased variance m2; with
    cudnn_off every backend updates the statistics in the backward pass with that biased
    variance (cuDNN would use the unbiased one, 2 * m2 here). Its output is multiplied by 0;
    it is given gamma (whose gradient it adds 0.0 to) so that the backward pass runs it whenever
    gamma is trained, even if the layer's input needs no gradient. (With fix_gamma, MXNet's
    BatchNorm would overwrite gamma with 1.)
    """
    root = F.sqrt(m2 + 1e-30)  # a finite gradient where m2 is 0
    samples = F.stack(root, -root, axis=0)  # (2, C): MXNet's own kernel, any float type
    stats = F.BatchNorm(samples, gamma, F.zeros_like(gamma), running_mean, running_var,
                        momentum=momentum, fix_gamma=False, cudnn_off=True)
    return 0 * F.sum(stats)


def _amp_initialized() -> bool:
    return amp._amp_initialized  # pylint: disable=protected-access
