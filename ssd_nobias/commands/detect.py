"""Detect objects in your own images, folders of images or videos, with any exported or trained model.

    python scripts/detect.py --params runs/x/x-best.params photo.jpg [--out DIR]
    python scripts/detect.py --deploy runs/x/export 'pictures/*.jpg' clip.mp4 [--thresh 0.3]
    python scripts/detect.py --onnx runs/x/export/MODEL.onnx folder/ [--classes cat dog]
    python scripts/detect.py --accelerator runs/x/export/accelerator --int8 photo.jpg
"""
from ssd_nobias import cli
from ssd_nobias.atomic import stopping_on_signals
from ssd_nobias.commands import options
from ssd_nobias.config import MAX_PIXELS


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0], config_required=False)
    options.add_model(p)
    p.add_argument("--input", dest="inputs", action="append", default=[], metavar="PATH",
                   help="an image, a folder, a glob or a video (repeatable; or give them last)")
    p.add_argument("--out", help="output folder (default: detect beside the model: the "
                                 "checkpoint's folder, or the one holding the export; detect2, "
                                 "detect3, ... when taken)")
    cli.add_device(p)
    p.add_argument("--thresh", type=float,
                   help="lowest score kept (default: the model's eval.score_thresh, as eval "
                        "draws it; 0.5 for an export that carries no config)")
    p.add_argument("--classes", nargs="+", metavar="NAME", help="keep only these classes")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip (and count) unreadable inputs instead of stopping at the first")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                   help="an image whose header says it holds more pixels is not decoded, an "
                        "unreadable input (default %(default)d)")
    args = p.parse_args(argv)
    # positional words: key=value overrides, anything else an input
    inputs = args.inputs + [w for w in args.overrides if "=" not in w]
    args.overrides = [w for w in args.overrides if "=" in w]
    options.check_model(p, args)
    # MXNet is imported only now: --help answers at once
    from ssd_nobias.runtime.detect import Detector, find_inputs, run
    from ssd_nobias.runtime.kernels import int8_verdict

    if not inputs:
        p.error("give at least one input: an image, a folder, a glob or a video")
    if options.runs_int8(args):
        print(int8_verdict(args.runtime))
    cfg = options.config_if_any(args)  # --config, else the one the model carries
    thresh = args.thresh if args.thresh is not None else \
        cfg.eval.score_thresh if cfg is not None else 0.5
    if args.params:
        detector = Detector.from_checkpoint(args.params, thresh, args.classes, args.device, cfg)
    else:
        detector = Detector.from_export(args.deploy or args.onnx or args.accelerator, args.int8,
                                        thresh, args.classes, args.device, args.runtime)
    out = args.out or options.default_out(args, "detect")
    with stopping_on_signals():
        summary = run(detector, find_inputs(inputs), out, skip_bad=args.skip_bad,
                      max_pixels=args.max_pixels)
    skipped = f"; skipped {len(summary.skipped)} unreadable: " \
              f"{', '.join(summary.skipped)}" if summary.skipped else ""
    print(f"{summary.images} image(s) at {summary.images_per_s:.1f} images/s; wrote annotated "
          f"copies and <name>.json under {out}{skipped}")
    return 0

