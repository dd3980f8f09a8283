"""What going bias-free costs in INT8: the bias-free INT8 accelerator pair against the stock
INT8 baseline (a stock-BatchNorm model quantized the ordinary way, export/stock_int8.py), each
against its own float32 pair, in val mAP and in ONNX Runtime images/s (one run of alternating
rounds; the host part, the same for both, is not timed), with the INT8 speed ratio of each
round (both graphs timed in it) and the ops ONNX Runtime runs for each INT8 graph after its
graph optimizations.

    python bench/stock_int8.py --bias-free runs/a --stock runs/b [--checkpoint last]
        [--calib-images 64] [--rounds 5] [--iters 10] [--out FILE.json]

Each run directory is a training's output_dir (its config.yaml and <name>-<checkpoint>.params);
the exports are written to <run>/export.
"""
import argparse
import os
import statistics
import sys

import mxnet as mx
import numpy as np

from ssd_nobias import cli
from ssd_nobias.atomic import write_json
from ssd_nobias.config import load_config
from ssd_nobias.export.deploy import export_deploy
from ssd_nobias.export.split import export_accelerator
from ssd_nobias.export.stock_int8 import STOCK_DIR, export_stock_int8
from ssd_nobias.machine import cpu_info
from ssd_nobias.runtime.accelerator import ACCELERATOR_DIR, FLOAT_ONNX, INT8_ONNX, OnnxAccelerator
from ssd_nobias.runtime.onnxrt import optimized_ops

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_speed import Timed, images_per_s  # noqa: E402


def exported(run: str, checkpoint: str, calib_images: int, stock: bool):
    """(val figures, the accelerator folder) of a run, exported as its kind asks."""
    cfg = load_config(os.path.join(run, "config.yaml"), ["data.num_workers=0"])
    params = os.path.join(run, f"{cfg.name}-{checkpoint}.params")
    out = os.path.join(run, "export")
    export_deploy(cfg, params, out)
    if stock:
        report = export_stock_int8(cfg, params, out, calib_images, progress=False)
        return report["val"], os.path.join(out, STOCK_DIR)
    report = export_accelerator(cfg, params, out, int8=True, calib_images=calib_images,
                                progress=False)
    return report["int8"]["val"], os.path.join(out, ACCELERATOR_DIR)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bias-free", required=True, metavar="RUN", help="a model.norm=nobias run")
    p.add_argument("--stock", required=True, metavar="RUN", help="a model.norm=batchnorm run")
    p.add_argument("--checkpoint", default="last", help="which checkpoint (default: last)")
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", metavar="FILE.json")
    args = p.parse_args(argv)
    arms = {"bias-free": exported(args.bias_free, args.checkpoint, args.calib_images, False),
            "stock": exported(args.stock, args.checkpoint, args.calib_images, True)}
    graphs = {(arm, kind): OnnxAccelerator(os.path.join(folder, name))
              for arm, (_, folder) in arms.items()
              for kind, name in (("float32", FLOAT_ONNX), ("int8", INT8_ONNX))}
    speeds = {(key, batch): [] for key in graphs for batch in (1, 8)}
    for _ in range(args.rounds):
        for (key, batch), values in speeds.items():
            x = np.random.RandomState(batch).normal(0, 1, (batch, 3, 300, 300))
            values.append(images_per_s(Timed(graphs[key]), mx.nd.array(x, dtype="float32"),
                                       args.iters))
    medians = {k: statistics.median(v) for k, v in speeds.items()}
    cpu = cpu_info().describe()
    metric = arms["bias-free"][0]["metric"]
    print(f"val {metric} and ONNX Runtime images/s of the accelerator graph (median of "
          f"{args.rounds} rounds of {args.iters}); {cpu}")
    print(f"  {'arm':10s} {'float32':>8s} {'INT8':>8s} {'drop':>7s}   {'INT8 img/s b1':>13s} "
          f"{'b8':>7s}   {'INT8/fp32 b1':>12s} {'b8':>6s}")
    rows = []
    for arm, (val, _) in arms.items():
        drop = val["float32_pair"] - val["int8_pair"]
        i1, i8 = medians[((arm, "int8"), 1)], medians[((arm, "int8"), 8)]
        f1, f8 = medians[((arm, "float32"), 1)], medians[((arm, "float32"), 8)]
        print(f"  {arm:10s} {val['float32_pair']:8.4f} {val['int8_pair']:8.4f} "
              f"{100 * drop:+6.2f}p   {i1:13.1f} {i8:7.1f}   {i1 / f1:11.2f}x {i8 / f8:5.2f}x")
        rows.append({"arm": arm, "val": val, "drop_points": 100 * drop,
                     "images_per_s": {"float32": [f1, f8], "int8": [i1, i8]}})
    extra = rows[0]["drop_points"] - rows[1]["drop_points"]
    ours, theirs = rows[0]["images_per_s"]["int8"], rows[1]["images_per_s"]["int8"]
    print(f"  bias-free INT8 drop minus stock INT8 drop: {extra:+.2f} points; bias-free INT8 "
          f"images/s over stock INT8: {ours[0] / theirs[0]:.2f}x (batch 1), "
          f"{ours[1] / theirs[1]:.2f}x (batch 8)")
    ratios = {batch: [a / b for a, b in zip(speeds[(("bias-free", "int8"), batch)],
                                            speeds[(("stock", "int8"), batch)])]
              for batch in (1, 8)}
    for batch, r in ratios.items():
        print(f"  the same ratio round by round, batch {batch}: median {statistics.median(r):.2f}x"
              f", range {min(r):.2f}x to {max(r):.2f}x")
    ops = {arm: optimized_ops(os.path.join(folder, INT8_ONNX)) for arm, (_, folder) in arms.items()}
    for arm, counts in ops.items():
        print(f"  ONNX Runtime runs for the {arm} INT8 graph: "
              + ", ".join(f"{n} {op}" for op, n in sorted(counts.items())))
    if args.out:
        write_json(args.out, {"cpu": cpu, "metric": metric, "runs": {"bias-free": args.bias_free,
                                                                     "stock": args.stock},
                              "checkpoint": args.checkpoint, "rows": rows,
                              "int8_ratio_per_round": {f"b{b}": r for b, r in ratios.items()},
                              "ort_optimized_ops": ops,
                              "rounds": {f"{k[0][0]} {k[0][1]} b{k[1]}": v
                                         for k, v in speeds.items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
