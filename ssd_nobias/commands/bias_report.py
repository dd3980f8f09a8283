"""Print which convolutions of a model have no bias once BatchNorm is folded into them.

    python scripts/bias_report.py --model ssd_300_mobilenet1.0_voc [--norm nobias]
        [--bias-free 'pw*' 'extra*'] [--no-heads-bias]
"""
import argparse
import sys

import mxnet as mx
from mxnet import autograd

from ssd_nobias.model.ssd import MODEL_NAMES, bias_report, format_bias_report, get_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ssd_300_mobilenet1.0_voc", choices=MODEL_NAMES)
    parser.add_argument("--classes", nargs="+", help="class names, for *_custom models")
    parser.add_argument("--norm", default="nobias", choices=["nobias", "batchnorm"])
    parser.add_argument("--bias-free", nargs="+", default=["*"], metavar="GLOB",
                        help="layers made bias-free (names from the table), default all")
    parser.add_argument("--no-heads-bias", action="store_true",
                        help="also drop the bias of the class and box predictors")
    args = parser.parse_args(argv)
    try:
        net = get_model(args.model, classes=args.classes, norm=args.norm,
                        bias_free=args.bias_free, heads_bias=not args.no_heads_bias)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    net.initialize()
    size = int(args.model.split("_")[1])
    with autograd.train_mode():  # one batch of statistics, as training would gather
        net(mx.nd.random.uniform(shape=(2, 3, size, size)))
    print(format_bias_report(bias_report(net)))
    return 0

