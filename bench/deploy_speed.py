"""Inference speed of the deploy graph against the unfolded model and a stock-BatchNorm model of
the same architecture, with and without MXNet's MKLDNN conv+BN fusion, in one run.

Each variant runs the whole detector (features, heads, decoding, NMS) on the CPU, hybridized;
the variants are timed in alternating rounds so that load on a shared machine hits all alike.
Prints images/s at batch 1 and 8 and the ratio to the fused stock model. The ONNX model (the
deploy graph with per-class NMS, see ssd_nobias/onnx_model.py) runs in ONNX Runtime on the CPU.

    python bench/deploy_speed.py [--model ssd_300_mobilenet1.0_voc] [--rounds 5] [--iters 10]
"""
import argparse
import statistics
import tempfile
import time
import warnings

import mxnet as mx
import numpy as np

from ssd_nobias import get_model
from ssd_nobias.export import fold_ssd
from ssd_nobias.onnx_model import export_onnx
from ssd_nobias.predictors import OnnxPredictor

FUSED = "MKLDNN"


def trained_looking(norm: str, model: str, size: int):
    """A model with random weights and non-trivial norm statistics (speed does not care)."""
    mx.random.seed(0)
    net = get_model(model, norm=norm)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, size, size)))
    rng = np.random.RandomState(0)
    for name, p in net.collect_params().items():
        if name.endswith("running_var"):
            p.set_data(mx.nd.array(rng.uniform(0.5, 2, p.shape)))
    return net


def deploy_graph(model: str, size: int, folder: str) -> mx.gluon.SymbolBlock:
    net = fold_ssd(trained_looking("nobias", model, size), [mx.cpu()])
    net.hybridize()
    net(mx.nd.zeros((1, 3, size, size)))
    net.export(f"{folder}/deploy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mx.gluon.SymbolBlock.imports(f"{folder}/deploy-symbol.json", ["data"],
                                            f"{folder}/deploy-0000.params")


def onnx_model(model: str, size: int, folder: str) -> OnnxPredictor:
    deploy_graph(model, size, folder)
    export_onnx(f"{folder}/deploy", f"{folder}/deploy.onnx", (1, 3, size, size))
    return OnnxPredictor(f"{folder}/deploy.onnx")


def prepared(block, x, fuse: bool):
    block.hybridize(static_alloc=True, static_shape=True)
    if fuse:
        block.optimize_for(x, backend=FUSED, static_alloc=True, static_shape=True)
    return block


def images_per_s(block, x, iters: int) -> float:
    if isinstance(block, OnnxPredictor):  # time ONNX Runtime alone, not NDArray conversions
        feed = {block.input: x.asnumpy()}
        sess = block.session
        block = lambda _: [mx.nd.array(sess.run(None, feed)[0])]  # noqa: E731
    block(x)[0].wait_to_read()
    start = time.perf_counter()
    for _ in range(iters):
        out = block(x)
    out[0].wait_to_read()
    return iters * x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ssd_300_mobilenet1.0_voc")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args()
    size = int(args.model.split("_")[1])
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (1, 8):
            x = mx.nd.random.uniform(shape=(batch, 3, size, size))
            variants = {
                "deploy graph (folded, bias-free)": prepared(deploy_graph(args.model, size, tmp),
                                                             x, False),
                "deploy graph + MKLDNN fusion": prepared(deploy_graph(args.model, size, tmp),
                                                         x, True),
                "ours unfolded, eval mode": prepared(trained_looking("nobias", args.model, size),
                                                     x, False),
                "stock BatchNorm": prepared(trained_looking("batchnorm", args.model, size),
                                            x, False),
                "stock BatchNorm + MKLDNN fusion": prepared(
                    trained_looking("batchnorm", args.model, size), x, True),
                "ONNX model in ONNX Runtime": onnx_model(args.model, size, tmp),
            }
            speeds = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, block in variants.items():
                    speeds[name].append(images_per_s(block, x, args.iters))
            base = statistics.median(speeds["stock BatchNorm + MKLDNN fusion"])
            print(f"{args.model}, batch {batch}, CPU, median of {args.rounds} rounds of "
                  f"{args.iters} forwards")
            for name, values in speeds.items():
                median = statistics.median(values)
                print(f"  {name:34s} {median:8.1f} images/s  {median / base:5.2f}x fused stock")


if __name__ == "__main__":
    main()
