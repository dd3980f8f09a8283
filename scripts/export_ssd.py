"""Fold BatchNorm into the convolutions and write a deploy graph checked against the trained model.

    python scripts/export_ssd.py --config C.yaml --params runs/x/x-best.params [--out DIR]
        [--onnx] [--force-zero-shift]
"""
import os
import sys

from ssd_nobias import cli
from ssd_nobias.export import export_deploy, format_report
from ssd_nobias.naive_fix import export_zero_shift


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
    args = p.parse_args(argv)
    cfg = cli.config_from(args)
    out = args.out or os.path.join(cfg.output_dir, "export")
    if args.force_zero_shift:
        report = export_zero_shift(cfg, args.params, out, args.onnx)
    else:
        report = export_deploy(cfg, args.params, out, onnx=args.onnx)
    print(format_report(report))
    onnx = f"{report['onnx']['file']}, " if "onnx" in report else ""
    print(f"wrote {report['symbol']}, {report['deploy_params']}, {onnx}{out}/preprocess.json, "
          f"{out}/export_report.json")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
