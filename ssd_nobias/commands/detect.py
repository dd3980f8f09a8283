"""Detect objects in your own images, folders of images or videos, with any exported or trained model.

    python scripts/detect.py --params runs/x/x-best.params photo.jpg [--out DIR]
    python scripts/detect.py --deploy runs/x/export 'pictures/*.jpg' clip.mp4 [--thresh 0.3]
    python scripts/detect.py --onnx runs/x/export/MODEL.onnx folder/ [--classes cat dog]
    python scripts/detect.py --accelerator runs/x/export/accelerator --int8 photo.jpg
"""
import os

from ssd_nobias import cli
from ssd_nobias.config import load_config
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.runtime.detect import Detector, find_inputs, run
from ssd_nobias.runtime.predictors import checkpoint_config, load_predictor


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0], config_required=False)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--params", help="a .params file written by train_ssd.py (its config "
                                        "comes from the sidecar beside it unless --config)")
    which.add_argument("--deploy", metavar="DIR", help="a folder written by export_ssd.py")
    which.add_argument("--onnx", metavar="FILE", help="an ONNX model written by export_ssd.py")
    which.add_argument("--accelerator", metavar="DIR",
                       help="the accelerator graph + host part (export_ssd.py --accelerator)")
    p.add_argument("--int8", action="store_true", help="with --accelerator: the INT8 graph")
    p.add_argument("--input", dest="inputs", action="append", default=[], metavar="PATH",
                   help="an image, a folder, a glob or a video (repeatable; or give them last)")
    p.add_argument("--out", default="detections", help="output folder (default: detections)")
    cli.add_device(p)
    p.add_argument("--thresh", type=float, default=0.5, help="lowest score kept (default 0.5)")
    p.add_argument("--classes", nargs="+", metavar="NAME", help="keep only these classes")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip (and count) unreadable inputs instead of stopping at the first")
    args = p.parse_args(argv)
    # positional words: key=value overrides, anything else an input
    inputs = args.inputs + [w for w in args.overrides if "=" not in w]
    overrides = [w for w in args.overrides if "=" in w]
    if args.int8 and not args.accelerator:
        p.error("--int8 goes with --accelerator DIR")
    if not inputs:
        p.error("give at least one input: an image, a folder, a glob or a video")
    if args.config:
        cfg = load_config(args.config, overrides)
    elif args.params:  # the config its sidecar records
        cfg = checkpoint_config(args.params, overrides)
    else:
        cfg = None  # an export carries what it needs
    model = load_predictor(cfg, params_path=args.params, deploy_dir=args.deploy,
                           onnx_path=args.onnx, accelerator_dir=args.accelerator,
                           int8=args.int8, device=args.device)
    if args.params:
        prep = Preprocess.from_config(cfg)
    else:
        prep = Preprocess.load(args.deploy or args.accelerator or
                               os.path.dirname(os.path.abspath(args.onnx)))
    detector = Detector(model, prep, args.thresh, args.classes)
    summary = run(detector, find_inputs(inputs), args.out, skip_bad=args.skip_bad)
    skipped = f"; skipped {len(summary.skipped)} unreadable: " \
              f"{', '.join(summary.skipped)}" if summary.skipped else ""
    print(f"{summary.images} image(s) at {summary.images_per_s:.1f} images/s; wrote annotated "
          f"copies and <name>.json under {args.out}{skipped}")
    return 0

