"""Cost of NoBiasBatchNorm in a full training iteration, against stock BatchNorm, in one run.

One iteration = forward in training mode, SSD multibox loss, backward, SGD step, on
ssd_300_mobilenet1.0_voc, hybridized with static allocation, on one context (the CPU, or a GPU
with MXNet's CUDA build). The models are timed alternately so that load on a shared machine
hits them alike; the median of the per-pair ratios is printed.

    python bench/bn_overhead.py [--batch 8] [--repeats 7] [--model ssd_300_mobilenet1.0_voc]
                                [--plain-layout] [--ctx cpu | gpu0]

--plain-layout runs the operator through its lib_api compute alone, which sees plain NCHW only
(MXNet copies the convolutions' blocked activations around it): the cost the MKLDNN compute
removes. Variants: stock BatchNorm, the shipped bias-free recipe, the same with plain convs (what
the weight reparametrizations cost) and with the layer built from MXNet operators (norm_impl
ops, what runs where the compiled operator cannot). On a GPU, "nobias" is the operator's GPU
compute (gpu_compute.cc); its time is compared with cuDNN's BatchNorm.
"""
import argparse
import os
import statistics
import time

import mxnet as mx
from gluoncv.loss import SSDMultiBoxLoss
from mxnet import autograd, gluon

from ssd_nobias import get_model
from ssd_nobias.model import native
from ssd_nobias.devices import contexts
from ssd_nobias.errors import ConfigError


# name -> get_model arguments; "nobias" is the shipped bias-free recipe
VARIANTS = {"batchnorm": {"norm": "batchnorm"}, "nobias": {"norm": "nobias"},
            "nobias, plain convs": {"norm": "nobias", "conv_weights": "plain",
                                    "depthwise_weights": "plain"},
            "nobias, ops version": {"norm": "nobias", "norm_impl": "ops"}}


def make_step(model: str, batch: int, ctx: mx.Context, **model_args):
    """A closure that runs one training iteration of `model` built with `model_args` on ctx."""
    mx.random.seed(0)
    net = get_model(model, **model_args)
    net.initialize(ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    size = int(model.split("_")[1])
    x = mx.nd.random.uniform(shape=(batch, 3, size, size), ctx=ctx)
    with autograd.train_mode():
        num_anchors = net(x)[2].shape[1]
    cls_target = mx.nd.random.randint(0, len(net.classes) + 1, shape=(batch, num_anchors),
                                      ctx=ctx).astype("float32")
    box_target = mx.nd.random.normal(shape=(batch, num_anchors, 4), ctx=ctx)
    loss_fn = SSDMultiBoxLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": 1e-4, "momentum": 0.9, "wd": 5e-4})

    def step():
        with autograd.record():
            cls_pred, box_pred, _ = net(x)
            total, _, _ = loss_fn([cls_pred], [box_pred], [cls_target], [box_target])
        autograd.backward(total)
        trainer.step(batch)
        mx.nd.waitall()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ssd_300_mobilenet1.0_voc")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--plain-layout", action="store_true",
                        help="keep the lib_api compute (plain NCHW only) for the operator")
    parser.add_argument("--ctx", default="cpu", help="cpu or gpuN (MXNet's CUDA build)")
    args = parser.parse_args()
    if args.plain_layout:
        os.environ[native.PLAIN_LAYOUT_ENV] = "1"
    try:
        ctx = contexts([args.ctx])[0]
    except ConfigError as err:
        raise SystemExit(str(err).replace("'train.ctx'", "--ctx")) from None
    if ctx.device_type == "gpu" and native.gpu_error() is not None:
        raise SystemExit(f"no GPU compute for the operator: {native.gpu_error()}")

    steps = {name: make_step(args.model, args.batch, ctx, **kw) for name, kw in VARIANTS.items()}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times = {norm: [] for norm in steps}
    for _ in range(args.repeats):
        for norm, step in steps.items():
            start = time.perf_counter()
            step()
            times[norm].append(time.perf_counter() - start)
    def ratios_to_batchnorm(name):
        return [n / b for n, b in zip(times[name], times["batchnorm"])]

    ratios = ratios_to_batchnorm("nobias")
    plain = ratios_to_batchnorm("nobias, plain convs")
    ops = ratios_to_batchnorm("nobias, ops version")
    if ctx.device_type == "gpu":
        where = f"{ctx}, nobias operator: GPU compute (NVRTC kernels)"
    else:
        layout = "plain NCHW (lib_api compute)" if args.plain_layout else "MKLDNN layouts"
        where = f"CPU, nobias operator on {layout}"
    print(f"{args.model}, batch {args.batch}, {where}, hybridized, {args.repeats} alternating "
          f"repeats")
    for norm, ts in times.items():
        print(f"  {norm:20s}: median {statistics.median(ts) * 1e3:8.1f} ms/iteration")
    print(f"  nobias / batchnorm: median ratio {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}; target <= 1.10)")
    print(f"  nobias with plain convs / batchnorm: median ratio {statistics.median(plain):.3f} "
          f"(the recipe's weight reparametrizations cost the difference)")
    print(f"  nobias built from MXNet operators (portable.py) / batchnorm: median ratio "
          f"{statistics.median(ops):.3f}")


if __name__ == "__main__":
    main()
