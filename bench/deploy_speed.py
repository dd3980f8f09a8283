"""Inference speed of the deploy graph against the unfolded model and a stock-BatchNorm model of
the same architecture, with and without MXNet's MKLDNN conv+BN fusion, in one run.

Each variant runs the whole detector (features, heads, decoding, NMS) on the CPU, hybridized;
the variants are timed in alternating rounds so that load on a shared machine hits all alike.
Prints images/s at batch 1 and 8 and the ratio to the fused stock model. The ONNX model (the
deploy graph with per-class NMS, see ssd_nobias/export/onnx.py) runs in ONNX Runtime on the CPU.

The accelerator graph (ssd_nobias/deploy) runs in ONNX Runtime in float32 and in INT8 (QDQ,
calibrated on random images: speed does not care), in the same alternating rounds, and the host
part (NumPy and host.int8.onnx) on the INT8 graph's outputs, per image against the INT8 graph.

    python bench/deploy_speed.py [--model ssd_300_mobilenet1.0_voc] [--rounds 5] [--iters 10]
        [--only accelerator]
"""
import argparse
import glob
import os
import statistics
import tempfile
import time
import warnings

import mxnet as mx
import numpy as np

from ssd_nobias import get_model
from ssd_nobias.runtime.accelerator import OnnxAccelerator
from ssd_nobias.export.accelerator import (AcceleratorNet, deploy_anchors,
                                           export_onnx as export_accelerator_onnx, export_symbol,
                                           host_onnx, host_part)
from ssd_nobias.data.transforms import ValTransform
from ssd_nobias.runtime.host import HostPart
from ssd_nobias.export.int8 import quantize
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.images import read_image
from ssd_nobias.export.deploy import fold_ssd
from ssd_nobias.machine import cpu_info
from ssd_nobias.export.onnx import export_onnx, find_cut
from ssd_nobias.runtime.onnxrt import session
from ssd_nobias.runtime.predictors import OnnxPredictor

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


class Timed:
    """A callable on a NumPy batch, timed like the MXNet variants."""

    def __init__(self, run):
        self.run = run


def build_accelerator(model: str, size: int, folder: str) -> None:
    """Write folder/accelerator{.onnx,.int8.onnx} and the host part for an untrained model."""
    folded = fold_ssd(trained_looking("nobias", model, size), [mx.cpu()])
    folded.hybridize()
    x = mx.nd.random.normal(shape=(2, 3, size, size))
    folded(x)
    folded.export(f"{folder}/acc-deploy")
    acc = AcceleratorNet(folded)
    prefix = export_symbol(acc, x, folder)
    export_accelerator_onnx(prefix, f"{prefix}.onnx", size)
    cut = find_cut(mx.sym.load(f"{folder}/acc-deploy-symbol.json"), (1, 3, size, size))
    host = host_part(acc, cut, deploy_anchors(f"{folder}/acc-deploy", cut, size))
    host.save(folder)
    calib = [np.random.RandomState(i).normal(0, 1, (3, size, size)).astype(np.float32)
             for i in range(8)]
    scales = quantize(f"{prefix}.onnx", f"{prefix}.int8.onnx", calib, progress=False)
    quantize(f"{prefix}.onnx", f"{prefix}.int32heads.onnx", calib, progress=False,
             heads="int32")
    host = HostPart(host.spec, host.anchors, host.biases, scales)
    host.save(folder)
    shapes = [o.shape for o in OnnxAccelerator(f"{prefix}.onnx")(calib[0][None])]
    host_onnx(host, f"{folder}/host.onnx", shapes)
    host_onnx(host, f"{folder}/host.int8.onnx", shapes, int8=True)


def accelerator_variants(folder: str) -> dict:
    """The accelerator graph of `folder` in float32 and INT8 and its host part (NumPy and
    host.int8.onnx, on the INT8 graph's outputs for the same batch), as Timed variants."""
    fp32 = OnnxAccelerator(f"{folder}/accelerator.onnx")
    int8 = OnnxAccelerator(f"{folder}/accelerator.int8.onnx")
    host = HostPart.load(folder, int8=True)
    host_sess = session(f"{folder}/host.int8.onnx")
    names = [i.name for i in host_sess.get_inputs()]
    outputs = {}

    def int8_run(batch):
        outputs[len(batch)] = int8(batch)
    variants = {"accelerator graph float32 (ORT)": Timed(fp32),
                "accelerator graph INT8 (ORT)": Timed(int8_run)}
    if os.path.isfile(f"{folder}/accelerator.int32heads.onnx"):
        variants["  the same, int32 head outputs"] = Timed(
            OnnxAccelerator(f"{folder}/accelerator.int32heads.onnx"))
    return dict(variants, **{
            "host part, NumPy": Timed(lambda batch: host(outputs[len(batch)])),
            "host part, host.int8.onnx (ORT)": Timed(
                lambda batch: host_sess.run(None, dict(zip(names, outputs[len(batch)]))))})


def real_images(folder: str, pattern: str, count: int) -> np.ndarray:
    """`count` images matching `pattern`, preprocessed as the export's preprocess.json says."""
    transform = ValTransform(Preprocess.load(folder))
    paths = sorted(glob.glob(pattern))[:count]
    if len(paths) < count:
        raise SystemExit(f"{pattern} matches {len(paths)} images, fewer than {count}")
    return np.stack([transform(read_image(p), np.zeros((0, 5)))[0].asnumpy() for p in paths])


def prepared(block, x, fuse: bool):
    block.hybridize(static_alloc=True, static_shape=True)
    if fuse:
        block.optimize_for(x, backend=FUSED, static_alloc=True, static_shape=True)
    return block


def images_per_s(block, x, iters: int) -> float:
    if isinstance(block, Timed):
        batch = x.asnumpy()
        block.run(batch)
        start = time.perf_counter()
        for _ in range(iters):
            block.run(batch)
        return iters * x.shape[0] / (time.perf_counter() - start)
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
    p.add_argument("--only", choices=["accelerator"],
                   help="time the accelerator graph and host part alone")
    p.add_argument("--accelerator", metavar="DIR",
                   help="time this export's accelerator/ folder (trained weights) instead of "
                        "an untrained --model's; implies --only accelerator")
    p.add_argument("--images", metavar="GLOB",
                   help="with --accelerator: real inputs (the host part's work depends on how "
                        "many boxes a trained model proposes); default random")
    args = p.parse_args()
    args.only = "accelerator" if args.accelerator else args.only
    size = 300 if args.accelerator else int(args.model.split("_")[1])
    cpu = cpu_info()
    print(f"CPU: {cpu.describe()}; MXNet and ONNX Runtime with their default threads")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.accelerator or tmp
        if not args.accelerator:
            build_accelerator(args.model, size, tmp)
        accelerator = accelerator_variants(folder)
        for batch in (1, 8):
            x = mx.nd.random.uniform(shape=(batch, 3, size, size))
            if args.images:
                x = mx.nd.array(real_images(folder, args.images, batch))
            variants = {} if args.only else {
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
            variants.update(accelerator)  # the host part runs on the INT8 outputs just made
            speeds = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, block in variants.items():
                    speeds[name].append(images_per_s(block, x, args.iters))
            medians = {name: statistics.median(v) for name, v in speeds.items()}
            base_name = "accelerator graph float32 (ORT)" if args.only else \
                "stock BatchNorm + MKLDNN fusion"
            print(f"{args.accelerator or args.model}, batch {batch}, CPU, median of "
                  f"{args.rounds} rounds of {args.iters} forwards")
            for name, median in medians.items():
                print(f"  {name:34s} {median:8.1f} images/s  {median / medians[base_name]:5.2f}x "
                      f"{base_name}")
            int8 = medians["accelerator graph INT8 (ORT)"]
            print(f"  INT8 / float32 accelerator graph: "
                  f"{int8 / medians['accelerator graph float32 (ORT)']:.2f}x; host part per "
                  f"image as a share of the INT8 graph's time: NumPy "
                  f"{int8 / medians['host part, NumPy']:.1%}, host.int8.onnx "
                  f"{int8 / medians['host part, host.int8.onnx (ORT)']:.1%}")


if __name__ == "__main__":
    main()
