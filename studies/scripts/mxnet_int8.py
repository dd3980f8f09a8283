"""MXNet's own INT8 path on an exported model: val mAP and speed of the deploy graph quantized
by quantize_net_v2 (MKLDNN, channel-wise, calibrated on training images) against float32.

    python studies/scripts/mxnet_int8.py --config runs/demo/config.yaml --deploy runs/demo/export \
        [--calib-images 64] [--calib-mode naive|entropy] [--rounds 5] [--iters 10]
"""
import os
import statistics
import sys

import mxnet as mx

from ssd_nobias import cli
from ssd_nobias.config import base_size, eval_metric
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.datasets import val_set
from ssd_nobias_studies.mxnet_int8 import CALIB_MODES, quantize_deploy
from ssd_nobias.export.split import calibration_images
from ssd_nobias.evaluation.evaluate import EvalSettings, evaluate
from ssd_nobias.machine import cpu_info
from ssd_nobias.runtime.predictors import load_deploy

# the timing helpers of the speed benchmarks
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "bench"))
from deploy_speed import images_per_s  # noqa: E402


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--deploy", required=True, metavar="DIR", help="a folder export_ssd.py wrote")
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--calib-mode", choices=CALIB_MODES, default="naive")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args(argv)
    cfg = cli.config_from(args)
    size = base_size(cfg)
    fp32, classes = load_deploy(args.deploy, [mx.cpu()])
    int8 = quantize_deploy(load_deploy(args.deploy, [mx.cpu()])[0],
                           calibration_images(cfg, args.calib_images), args.calib_mode)
    dataset, _ = val_set(cfg)
    print(f"CPU: {cpu_info().describe()}; {args.deploy}, {args.calib_mode} calibration on "
          f"{args.calib_images} training images")
    for name, block in (("float32 deploy graph", fp32), ("INT8 (quantize_net_v2)", int8)):
        result = evaluate(block, dataset, classes, [mx.cpu()], Preprocess.from_config(cfg),
                          EvalSettings(cfg.eval.batch_size, 0, eval_metric(cfg)))
        print(f"  {name:24s} val {result.metric} {result.value:.4f}")
    for batch in (1, 8):
        x = mx.nd.random.normal(shape=(batch, 3, size, size))
        speeds = {"float32": [], "int8": []}
        for _ in range(args.rounds):
            speeds["float32"].append(images_per_s(fp32, x, args.iters))
            speeds["int8"].append(images_per_s(int8, x, args.iters))
        f, q = (statistics.median(speeds[k]) for k in ("float32", "int8"))
        print(f"  batch {batch}: float32 {f:.1f} images/s, INT8 {q:.1f} images/s, {q / f:.2f}x "
              f"(median of {args.rounds} alternating rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
