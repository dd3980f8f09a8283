"""Fold BatchNorm into the convolutions and write a deploy graph checked against the trained model.

    python scripts/export_ssd.py --config C.yaml --params runs/x/x-best.params [--out DIR]
        [--onnx] [--force-zero-shift] [--recalibrate N]
        [--accelerator [--int8 [--calib-images N] [--calib-method minmax|entropy|percentile]
                             [--int8-heads int8|int32]]]
"""
import os

from ssd_nobias import cli
from ssd_nobias.export.int8 import CALIB_METHODS, HEAD_OUTPUTS
from ssd_nobias.export.split import export_accelerator, format_accelerator
from ssd_nobias.export.deploy import add_to_report, export_deploy, format_report
from ssd_nobias.analysis.naive_fix import export_zero_shift
from ssd_nobias.analysis.precise_bn import format_recalibration, recalibrate_params


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--params", required=True, help="a .params file written by train_ssd.py")
    p.add_argument("--out", help="output folder (default: <output_dir>/export)")
    p.add_argument("--onnx", action="store_true",
                   help="also write <model>.onnx (per-class NMS) and check it in ONNX Runtime")
    p.add_argument("--force-zero-shift", action="store_true",
                   help="params trained with stock BatchNorm: drop the shifts (beta, running "
                        "mean) the config's bias-free layers cannot fold, and report the mAP "
                        "before and after")
    p.add_argument("--recalibrate", type=int, default=0, metavar="N",
                   help="first recompute every norm's statistics over N training batches with "
                        "the weights frozen (PreciseBN), write <out>/recalibrated.params and "
                        "export that; reports the val metric before and after")
    p.add_argument("--accelerator", action="store_true",
                   help="also write accelerator/: the graph a bias-free accelerator runs "
                        "(weight-only convolutions and ReLU, to the 12 raw head outputs; MXNet "
                        "and ONNX) and the host part (head biases, softmax, decoding, NMS)")
    p.add_argument("--int8", action="store_true",
                   help="with --accelerator: also the INT8 accelerator graph (QDQ, every zero "
                        "point 0), proven and measured")
    p.add_argument("--calib-images", type=int, default=64, metavar="N",
                   help="training images that calibrate the INT8 ranges (default 64)")
    p.add_argument("--calib-method", choices=CALIB_METHODS, default="minmax")
    p.add_argument("--int8-heads", choices=HEAD_OUTPUTS, default="int8",
                   help="the 12 head outputs as symmetric int8, each channel equalized to the "
                        "full range and dequantized on the host (default), or as the convs' "
                        "int32 accumulators (ONNX Runtime runs those convs in float)")
    args = p.parse_args(argv)
    if args.int8 and not args.accelerator:
        p.error("--int8 goes with --accelerator")
    if args.calib_images < 1:
        p.error("--calib-images must be at least 1")
    if args.recalibrate < 0 or (args.recalibrate and args.force_zero_shift):
        p.error("--recalibrate takes N >= 1 batches, and not with --force-zero-shift")
    cfg = cli.config_from(args)
    out = args.out or os.path.join(cfg.output_dir, "export")
    params = args.params
    if args.recalibrate:
        os.makedirs(out, exist_ok=True)
        recalibration = recalibrate_params(cfg, params, os.path.join(out, "recalibrated"),
                                           args.recalibrate, progress=True)
        params = recalibration["file"]
        print(format_recalibration(recalibration))
    if args.force_zero_shift:
        report = export_zero_shift(cfg, params, out, args.onnx)
    else:
        report = export_deploy(cfg, params, out, onnx=args.onnx)
    if args.recalibrate:
        add_to_report(out, "recalibration", recalibration)
    print(format_report(report))
    onnx = f"{report['onnx']['file']}, " if "onnx" in report else ""
    print(f"wrote {report['symbol']}, {report['deploy_params']}, {onnx}{out}/preprocess.json, "
          f"{out}/export_report.json")
    if args.accelerator:
        split = export_accelerator(cfg, params, out, int8=args.int8,
                                   calib_images=args.calib_images,
                                   calib_method=args.calib_method,
                                   int8_heads=args.int8_heads)
        print(format_accelerator(split))
    return 0

