"""What going bias-free costs in INT8: the bias-free INT8 accelerator pair against the stock
INT8 baseline (a stock-BatchNorm model quantized the ordinary way,
ssd_nobias_studies/stock_int8.py), each against its own float32 pair, in val mAP (or --split's) and per-layer SQNR for every run
given (one per seed), and in ONNX Runtime images/s for each arm's first run (one run of
alternating rounds; the host part, the same for both, is not timed), with the INT8 speed ratio
of each round (both graphs timed in it) and the ops ONNX Runtime runs for each INT8 graph after
its graph optimizations.

    python studies/scripts/stock_int8.py --bias-free runs/a [runs/a2 ...] --stock runs/b [runs/b2
    ...]
        [--checkpoint last] [--calib-images 64] [--calib-method minmax]
        [--stock-heads ordinary|equalized] [--split test] [--rounds 5] [--iters 10]
        [--out FILE.json]

Each run directory is a training's output_dir (its config.yaml and <name>-<checkpoint>.params);
the exports are written to <run>/export.
"""
import argparse
import os
import statistics
import sys
from typing import Optional

import mxnet as mx
import numpy as np

from ssd_nobias import cli
from ssd_nobias.atomic import write_json
from ssd_nobias.config import load_config
from ssd_nobias.data.datasets import build_dataset
from ssd_nobias.export.deploy import export_deploy
from ssd_nobias.export.int8 import CALIB_METHODS
from ssd_nobias.export.split import export_accelerator
from ssd_nobias_studies.stock_int8 import export_stock_int8
from ssd_nobias.machine import cpu_info
from ssd_nobias.runtime.accelerator import ACCELERATOR_DIR, FLOAT_ONNX, INT8_ONNX, OnnxAccelerator
from ssd_nobias.runtime.onnxrt import optimized_ops

# the timing helpers of the speed benchmarks
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "bench"))
from deploy_speed import Timed, images_per_s  # noqa: E402


def run_config(run: str, split: Optional[str] = None):
    """A run's config, scoring `split` of its voc_custom set instead of its val splits."""
    overrides = ["data.num_workers=0"] + ([f'data.val_splits=["{split}"]'] if split else [])
    return load_config(os.path.join(run, "config.yaml"), overrides)


def exported(run: str, checkpoint: str, calib_images: int, calib_method: str, stock: bool,
             equalize_heads: bool = False, split: Optional[str] = None):
    """(the figures on the val splits, or on `split` of a voc_custom set, with the per-layer
    SQNR; the accelerator folder) of a run, exported as its kind asks; calibrated on training
    images whatever is scored."""
    cfg = run_config(run, split)
    params = os.path.join(run, f"{cfg.name}-{checkpoint}.params")
    out = os.path.join(run, "export")
    export_deploy(cfg, params, out)
    if stock:
        report = export_stock_int8(cfg, params, out, calib_images, calib_method, progress=False,
                                   equalize_heads=equalize_heads)
        return {**report["val"], "sqnr": sqnr(report["layers"])}, report["folder"]
    report = export_accelerator(cfg, params, out, int8=True, calib_images=calib_images,
                                calib_method=calib_method, progress=False, evaluate=True)
    return ({**report["int8"]["val"], "sqnr": sqnr(report["int8"]["layers"])},
            os.path.join(out, ACCELERATOR_DIR))


def sqnr(layers: list) -> dict:
    """Median and weakest per-layer SQNR (dB) of an INT8 graph against its float32 graph, and
    the feature layer whose channels use the least of their shared range."""
    weakest = min(layers, key=lambda layer: layer["sqnr_db"])
    features = [layer for layer in layers if layer["layer"][:3] not in ("cls", "box")]
    narrowest = min(features, key=lambda layer: layer["channel_range_used"])
    return {"median_db": statistics.median(layer["sqnr_db"] for layer in layers),
            "min_db": weakest["sqnr_db"], "weakest_layer": weakest["layer"],
            # a feature layer whose median channel uses the least of its tensor's range
            "narrowest_layer": narrowest["layer"],
            "narrowest_range_used": narrowest["channel_range_used"]}


def timed_rounds(first: dict, rounds: int, iters: int) -> dict:
    """ONNX Runtime images/s of each arm's float32 and INT8 accelerator graph at batch 1 and 8,
    per round, every graph timed in every round."""
    graphs = {(arm, kind): OnnxAccelerator(os.path.join(folder, name))
              for arm, folder in first.items()
              for kind, name in (("float32", FLOAT_ONNX), ("int8", INT8_ONNX))}
    speeds = {(key, batch): [] for key in graphs for batch in (1, 8)}
    for _ in range(rounds):
        for (key, batch), values in speeds.items():
            x = np.random.RandomState(batch).normal(0, 1, (batch, 3, 300, 300))
            values.append(images_per_s(Timed(graphs[key]), mx.nd.array(x, dtype="float32"),
                                       iters))
    return speeds


def speed_figures(speeds: dict, first: dict, rounds: int, iters: int) -> tuple:
    """Prints and returns each arm's median images/s and the INT8 ratio of every round."""
    medians = {k: statistics.median(v) for k, v in speeds.items()}
    speed = {arm: {kind: [medians[((arm, kind), 1)], medians[((arm, kind), 8)]]
                   for kind in ("float32", "int8")} for arm in first}
    print(f"ONNX Runtime images/s of the accelerator graph (each arm's first run, median of "
          f"{rounds} rounds of {iters}), batch 1 / 8:")
    for arm, kinds in speed.items():
        (f1, f8), (i1, i8) = kinds["float32"], kinds["int8"]
        print(f"  {arm:10s} float32 {f1:7.1f} / {f8:7.1f}   INT8 {i1:7.1f} / {i8:7.1f}   "
              f"INT8 over float32 {i1 / f1:.2f}x / {i8 / f8:.2f}x")
    ratios = {batch: [a / b for a, b in zip(speeds[(("bias-free", "int8"), batch)],
                                            speeds[(("stock", "int8"), batch)])]
              for batch in (1, 8)}
    for batch, r in ratios.items():
        print(f"  bias-free INT8 over stock INT8 round by round, batch {batch}: median "
              f"{statistics.median(r):.2f}x, range {min(r):.2f}x to {max(r):.2f}x")
    return speed, ratios


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bias-free", required=True, nargs="+", metavar="RUN",
                   help="model.norm=nobias runs (several: one per seed)")
    p.add_argument("--stock", required=True, nargs="+", metavar="RUN",
                   help="model.norm=batchnorm runs")
    p.add_argument("--checkpoint", default="last", help="which checkpoint (default: last)")
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--calib-method", choices=CALIB_METHODS, default="minmax",
                   help="calibration of both arms (default %(default)s)")
    p.add_argument("--stock-heads", choices=("ordinary", "equalized"), default="ordinary",
                   help="the stock graph's heads quantized as ONNX Runtime does (default), or "
                        "each channel scaled to its own range first, as the bias-free pair's")
    p.add_argument("--split", help="the voc_custom split scored instead of the config's val "
                                   "splits (test: a figure nothing was chosen on)")
    p.add_argument("--rounds", type=int, default=5,
                   help="timed rounds (0: accuracy only, nothing timed)")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", metavar="FILE.json")
    args = p.parse_args(argv)
    runs = [("bias-free", run) for run in args.bias_free] + [("stock", run) for run in args.stock]
    if args.split:  # a split some run's dataset lacks stops here, before anything is exported
        for _, run in runs:
            build_dataset(run_config(run, args.split), "val")
    exports = [(arm, run, *exported(run, args.checkpoint, args.calib_images, args.calib_method,
                                    arm == "stock", args.stock_heads == "equalized", args.split))
               for arm, run in runs]
    first = {}  # the speed of a graph does not depend on its weights: each arm's first run
    for arm, _, _, folder in exports:
        first.setdefault(arm, folder)
    speeds = timed_rounds(first, args.rounds, args.iters) if args.rounds else {}
    cpu = cpu_info().describe()
    scored = args.split or "val"
    metric = exports[0][2]["metric"]
    print(f"{scored} {metric} of each run's accelerator pair, float32 and INT8; {cpu}")
    print(f"  {'arm':10s} {'float32':>8s} {'INT8':>8s} {'drop':>7s} {'SQNR median':>12s} "
          f"{'weakest':>8s}  run")
    rows = []
    for arm, run, scores, _ in exports:
        drop, q = scores["float32_pair"] - scores["int8_pair"], scores["sqnr"]
        print(f"  {arm:10s} {scores['float32_pair']:8.4f} {scores['int8_pair']:8.4f} "
              f"{100 * drop:+6.2f}p {q['median_db']:9.1f} dB {q['min_db']:5.1f} dB  {run} "
              f"(weakest: {q['weakest_layer']}; median channel uses "
              f"{q['narrowest_range_used']:.1%} of {q['narrowest_layer']}'s range)")
        rows.append({"arm": arm, "run": run, scored: scores, "drop_points": 100 * drop})
    mean_drop = {arm: statistics.mean(r["drop_points"] for r in rows if r["arm"] == arm)
                 for arm in first}
    extra = mean_drop["bias-free"] - mean_drop["stock"]
    print(f"  mean drop: bias-free {mean_drop['bias-free']:+.2f}, stock "
          f"{mean_drop['stock']:+.2f} points; bias-free minus stock: {extra:+.2f} points")
    speed, ratios = speed_figures(speeds, first, args.rounds, args.iters) if speeds else ({}, {})
    ops = {arm: optimized_ops(os.path.join(folder, INT8_ONNX)) for arm, folder in first.items()}
    for arm, counts in ops.items():
        print(f"  ONNX Runtime runs for the {arm} INT8 graph: "
              + ", ".join(f"{n} {op}" for op, n in sorted(counts.items())))
    if args.out:
        write_json(args.out, {"cpu": cpu, "metric": metric, "split": scored,
                              "checkpoint": args.checkpoint,
                              "calibration": {"images": args.calib_images,
                                              "method": args.calib_method},
                              "stock_heads": args.stock_heads, "rows": rows,
                              "mean_drop_points": mean_drop,
                              "bias_free_minus_stock_drop_points": extra,
                              "images_per_s": speed,
                              "int8_ratio_per_round": {f"b{b}": r for b, r in ratios.items()},
                              "ort_optimized_ops": ops,
                              "rounds": {f"{k[0][0]} {k[0][1]} b{k[1]}": v
                                         for k, v in speeds.items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
