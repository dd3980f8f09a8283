"""The accelerator graph's speed in ONNX Runtime and in OpenVINO, float32 and INT8 (and the
signed INT8 variant), at batch 1 and 8, in one run of alternating rounds.

Each runtime lives in its own process (OpenVINO timed beside live ONNX Runtime sessions ran
several times slower than alone); the parent asks each in turn for one timing, so a round
visits every runtime and graph once and load on a shared machine hits all alike. OpenVINO runs
float32 models with the f32 precision hint (not bfloat16).

    python bench/runtime_speed.py [--model ssd_300_mobilenet1.0_voc] [--accelerator DIR]
        [--rounds 5] [--iters 10] [--out FILE.json]
"""
import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from ssd_nobias.atomic import write_json
from ssd_nobias.machine import cpu_info
from ssd_nobias.runtime.accelerator import FLOAT_ONNX, INT8_ONNX, INT8_SIGNED_ONNX

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RUNTIMES = ("onnxruntime", "openvino")


def serve(conn, runtime: str, folder: str, graphs) -> None:
    """A runtime's process: load every graph, then answer (graph, batch, iters) with images/s."""
    from ssd_nobias.runtime.accelerator import OnnxAccelerator
    from ssd_nobias.runtime.openvino import OpenVinoAccelerator

    kind = {"onnxruntime": OnnxAccelerator, "openvino": OpenVinoAccelerator}[runtime]
    loaded = {g: kind(os.path.join(folder, g)) for g in graphs}
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        graph, batch, iters = job
        x = np.random.RandomState(batch).normal(0, 1, (batch, 3, 300, 300)).astype(np.float32)
        run = loaded[graph]
        run(x)
        start = time.perf_counter()
        for _ in range(iters):
            run(x)
        conn.send(iters * batch / (time.perf_counter() - start))


def build(model: str, folder: str) -> None:
    """An untrained model's accelerator folder with both INT8 variants (speed does not care
    about the weights)."""
    from deploy_speed import build_accelerator
    from ssd_nobias.export.int8 import quantize

    build_accelerator(model, int(model.split("_")[1]), folder)
    calib = [np.random.RandomState(i).normal(0, 1, (3, 300, 300)).astype(np.float32)
             for i in range(8)]
    quantize(os.path.join(folder, FLOAT_ONNX), os.path.join(folder, INT8_SIGNED_ONNX), calib,
             progress=False, activations="int8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ssd_300_mobilenet1.0_voc",
                   help="an untrained model of this name (ignored with --accelerator)")
    p.add_argument("--accelerator", metavar="DIR", help="an export's accelerator/ folder")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", metavar="FILE.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.accelerator or tmp
        if not args.accelerator:
            build(args.model, tmp)
        graphs = [g for g in (FLOAT_ONNX, INT8_ONNX, INT8_SIGNED_ONNX)
                  if os.path.isfile(os.path.join(folder, g))]
        ctx = mp.get_context("spawn")
        workers = {}
        for runtime in RUNTIMES:
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=serve, args=(theirs, runtime, folder, graphs))
            proc.start()
            workers[runtime] = (mine, proc)
        for mine, _ in workers.values():
            assert mine.recv() == "ready"
        speeds = {(r, g, b): [] for r in RUNTIMES for g in graphs for b in (1, 8)}
        for _ in range(args.rounds):
            for runtime, graph, batch in speeds:
                conn = workers[runtime][0]
                conn.send((graph, batch, args.iters))
                speeds[(runtime, graph, batch)].append(conn.recv())
        for conn, proc in workers.values():
            conn.send(None)
            proc.join()
    medians = {k: statistics.median(v) for k, v in speeds.items()}
    cpu = cpu_info().describe()
    print(f"{args.accelerator or args.model}: accelerator graph images/s, median of "
          f"{args.rounds} rounds of {args.iters} forwards, each runtime in its own process; "
          f"{cpu}")
    print(f"  {'graph':32s} {'batch':>5s} {'ONNX Runtime':>13s} {'OpenVINO':>10s} {'OV/ORT':>7s}")
    for graph in graphs:
        for batch in (1, 8):
            ort, ov = medians[("onnxruntime", graph, batch)], medians[("openvino", graph, batch)]
            print(f"  {graph:32s} {batch:5d} {ort:13.1f} {ov:10.1f} {ov / ort:6.2f}x")
    for runtime in RUNTIMES:
        for batch in (1, 8):
            ratio = medians[(runtime, INT8_ONNX, batch)] / medians[(runtime, FLOAT_ONNX, batch)]
            print(f"  {runtime}, batch {batch}: INT8 / float32 {ratio:.2f}x")
    if args.out:
        write_json(args.out, {"model": args.accelerator or args.model, "cpu": cpu,
                              "rounds": args.rounds, "iters": args.iters,
                              "images_per_s": [{"runtime": r, "graph": g, "batch": b,
                                                "median": medians[(r, g, b)], "rounds": v}
                                               for (r, g, b), v in speeds.items()]})


if __name__ == "__main__":
    main()
