"""Evaluate a trained SSD: VOC07/VOC mAP or COCO AP, per-class table, eval.json and pictures.

    python scripts/eval_ssd.py --params runs/x/x-best.params [--out DIR] [--device cpu]
    python scripts/eval_ssd.py --deploy runs/x/export [--out DIR]
    python scripts/eval_ssd.py --onnx runs/x/export/MODEL.onnx [--out DIR]
    python scripts/eval_ssd.py --accelerator runs/x/export/accelerator [--int8]

The dataset is the config's: --config's, else the one the model carries (recorded beside a
checkpoint, or in an export folder's config.yaml); key=value overrides change it
(data.root=..., say).
"""

from ssd_nobias import cli
from ssd_nobias.atomic import stopping_on_signals
from ssd_nobias.commands import options


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0], config_required=False)
    options.add_model(p)
    p.add_argument("--out", help="output folder (default: eval beside the model: the "
                                 "checkpoint's folder, or the one holding the export; eval2, "
                                 "eval3, ... when taken)")
    cli.add_device(p)
    args = p.parse_args(argv)
    options.check_model(p, args)
    # MXNet is imported only now: --help answers at once
    from ssd_nobias.evaluation.evaluate import evaluate_checkpoint, format_table
    from ssd_nobias.runtime.kernels import int8_verdict

    cfg = options.config_or_sidecar(args, "the dataset to evaluate on")
    if options.runs_int8(args):
        print(int8_verdict(args.runtime))
    out = args.out or options.default_out(args, "eval")
    with stopping_on_signals():
        result = evaluate_checkpoint(cfg, args.params, out, deploy_dir=args.deploy,
                                     onnx_path=args.onnx, accelerator_dir=args.accelerator,
                                     int8=args.int8, device=args.device, runtime=args.runtime)
    print(format_table(result))
    print(f"wrote {out}/eval.json, pr_curves.png, confusion_matrix.png, detections.png")
    return 0
