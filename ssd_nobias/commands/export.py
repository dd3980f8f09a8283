"""Fold BatchNorm into the convolutions and write a deploy graph checked against the trained model.

    python scripts/export_ssd.py --params runs/x/x-best.params [--out DIR] [--device cpu]
        [--formats onnx accelerator int8] [--recalibrate N]
        [--calib-images N|FOLDER|GLOB] [--calib-method minmax|entropy|percentile]
        [--int8-heads int8|int32] [--sample-images FOLDER|GLOB] [--eval]

The deploy graph (MXNet) is always written; --formats adds the others. The config is the one
recorded beside the checkpoint unless --config names one. The dataset is not needed: parity is
checked on --sample-images (else the val images when the dataset is here, else noise), INT8
calibrates on --calib-images; --eval adds the val metric of the INT8 pairs.
"""
import os

from ssd_nobias import cli
from ssd_nobias.commands import options
from ssd_nobias.export.int8 import CALIB_METHODS, HEAD_OUTPUTS
from ssd_nobias.export.staging import MANIFEST, staged
from ssd_nobias.errors import require


FORMATS = ("onnx", "accelerator", "int8", "int8-signed", "int8-cpu")


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0], config_required=False)
    p.add_argument("--params", required=True, metavar="FILE",
                   help="a .params checkpoint written by training")
    p.add_argument("--out", help="output folder (default: export beside the checkpoint; export2, "
                                 "export3, ... when taken); an --out that export wrote before "
                                 "is replaced whole")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=[], metavar="FORMAT",
                   help="also write: onnx (<model>.onnx, per-class NMS, checked in ONNX "
                        "Runtime); accelerator (accelerator/: the graph a bias-free accelerator "
                        "runs, weight-only convolutions and ReLU to the 12 raw head outputs, "
                        "and the host part: head biases, softmax, decoding, NMS); int8 "
                        "(accelerator/ with its INT8 graph: QDQ, every zero point 0, proven "
                        "and measured); int8-signed (its variant with signed int8 activations, "
                        "the Q/DQ form TensorRT takes); int8-cpu (its variant with 7-bit "
                        "weights, computed exactly by CPUs without VNNI too)")
    cli.add_device(p)
    p.add_argument("--layers", action="store_true",
                   help="print every convolution's bias (export_report.json holds them always)")
    p.add_argument("--recalibrate", type=int, default=0, metavar="N",
                   help="first recompute every norm's statistics over N training batches with "
                        "the weights frozen (PreciseBN), write <out>/recalibrated.params and "
                        "export that; reports the val metric before and after")
    p.add_argument("--sample-images", metavar="FOLDER|GLOB",
                   help="images the exported graphs are checked against the trained model on "
                        "(the first 8; default: the val images when the dataset is here, else "
                        "seeded noise)")
    int8 = p.add_argument_group("INT8 (--formats int8)")
    int8.add_argument("--calib-images", default="64", metavar="N|FOLDER|GLOB",
                      help="what calibrates the INT8 ranges: N training images (default 64), "
                           "or the images of a folder or glob (no dataset needed)")
    int8.add_argument("--eval", action="store_true",
                      help="also measure the val metric of the float32 and INT8 pairs (needs "
                           "the dataset)")
    int8.add_argument("--calib-method", choices=CALIB_METHODS, default="minmax")
    int8.add_argument("--int8-heads", choices=HEAD_OUTPUTS, default="int8",
                      help="the 12 head outputs as symmetric int8, each channel equalized to "
                           "the full range and dequantized on the host (default), or as the "
                           "convs' int32 accumulators (ONNX Runtime runs those convs in float)")
    cli.retired(p, "--force-zero-shift", "is gone: dropping a stock model's shifts (the naive "
                "fix) is measured by the studies, studies/ssd_nobias_studies/naive_fix.py")
    for flag in ("--onnx", "--accelerator", "--int8"):
        cli.retired(p, flag, f"names a model to run in eval and detect; export writes formats: "
                             f"--formats {flag[2:]}")
    args = p.parse_args(argv)
    if args.calib_images.isdigit():
        args.calib_images = int(args.calib_images)
        if args.calib_images < 1:
            p.error("--calib-images must be at least 1")
    if args.recalibrate < 0:
        p.error("--recalibrate takes N >= 1 batches")
    formats = set(args.formats)
    cfg = options.config_or_sidecar(args, "export")
    if formats & set(FORMATS):  # fail now, not after the deploy graph
        require("onnx", "onnxruntime", extra="onnx", what=f"--formats {' '.join(args.formats)}")
    if formats & {"int8", "int8-signed", "int8-cpu"}:
        from ssd_nobias.export.inputs import check_calibration  # MXNet: not for --help
        check_calibration(cfg, args.calib_images)
    out = os.path.normpath(args.out or options.default_out(args, "export"))
    with staged(out, args.params) as stage:
        def show(text: str) -> None:
            print(text.replace(stage, out))
        _export(cfg, args, formats, stage, show)
    print(f"wrote {out}/{MANIFEST} (every file's sha256 and the checkpoint's)")
    return 0



def _export(cfg, args, formats, out: str, show) -> None:
    """Every step of the export into the (staged) folder `out`; `show` prints a result."""
    from ssd_nobias.engine.precise_bn import format_recalibration, recalibrate_params
    from ssd_nobias.export.deploy import add_to_report, export_deploy, format_report
    from ssd_nobias.export.split import export_accelerator, format_accelerator

    params = args.params
    if args.recalibrate:
        recalibration = recalibrate_params(cfg, params, os.path.join(out, "recalibrated"),
                                           args.recalibrate, progress=True,
                                           device=args.device)
        params = recalibration["file"]
        show(format_recalibration(recalibration))
    report = export_deploy(cfg, params, out, onnx="onnx" in formats, device=args.device,
                           sample_images=args.sample_images)
    if args.recalibrate:
        add_to_report(out, "recalibration", recalibration)
    show(format_report(report, layers=args.layers))
    onnx = f"{report['onnx']['file']}, " if "onnx" in report else ""
    show(f"wrote {report['symbol']}, {report['deploy_params']}, {onnx}{out}/preprocess.json, "
         f"{out}/export_report.json")
    if formats & {"accelerator", "int8", "int8-signed", "int8-cpu"}:
        split = export_accelerator(cfg, params, out, int8="int8" in formats,
                                   int8_signed="int8-signed" in formats,
                                   int8_cpu="int8-cpu" in formats,
                                   calib_images=args.calib_images,
                                   calib_method=args.calib_method,
                                   int8_heads=args.int8_heads, device=args.device,
                                   sample_images=args.sample_images, evaluate=args.eval)
        show(format_accelerator(split))
