"""Evaluate a trained SSD: VOC07/VOC mAP or COCO AP, per-class table, eval.json and pictures.

    python scripts/eval_ssd.py --config C.yaml --params runs/x/x-best.params [--out DIR]
    python scripts/eval_ssd.py --config C.yaml --deploy runs/x/export [--out DIR]
    python scripts/eval_ssd.py --config C.yaml --onnx runs/x/export/MODEL.onnx [--out DIR]
    python scripts/eval_ssd.py --config C.yaml --accelerator runs/x/export/accelerator [--int8]
"""
import os

from ssd_nobias import cli
from ssd_nobias.evaluation.evaluate import evaluate_checkpoint, format_table


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--params", help="a .params file written by train_ssd.py")
    which.add_argument("--deploy", metavar="DIR", help="a folder written by export_ssd.py")
    which.add_argument("--onnx", metavar="FILE",
                       help="an ONNX model written by export_ssd.py --onnx (ONNX Runtime, CPU)")
    which.add_argument("--accelerator", metavar="DIR",
                       help="the accelerator graph + host part written by export_ssd.py "
                            "--accelerator (ONNX Runtime, CPU)")
    p.add_argument("--int8", action="store_true",
                   help="with --accelerator: the INT8 graph (export_ssd.py --int8)")
    p.add_argument("--out", help="output folder (default: <output_dir>/eval)")
    cli.add_device(p)
    args = p.parse_args(argv)
    if args.int8 and not args.accelerator:
        p.error("--int8 goes with --accelerator DIR")
    cfg = cli.config_from(args)
    out = args.out or os.path.join(cfg.output_dir, "eval")
    result = evaluate_checkpoint(cfg, args.params, out, deploy_dir=args.deploy,
                                 onnx_path=args.onnx, accelerator_dir=args.accelerator,
                                 int8=args.int8, device=args.device)
    print(format_table(result))
    print(f"wrote {out}/eval.json, pr_curves.png, detections.png")
    return 0

