"""Audit a model file for biases: an MXNet params file or an ONNX model.

An MXNet params file: conv biases, BatchNorm means and betas, biases once folded; an
accelerator ONNX graph: operators, bias inputs, INT8 zero points.

    python scripts/audit_params.py --params FILE.params [--symbol FILE-symbol.json]
        [--expect-bias-free GLOB ...] [--summary]
    python scripts/audit_params.py --accelerator DIR [--int8] [--summary]
    python scripts/audit_params.py --accelerator DIR/accelerator.int8-signed.onnx

An INT8 graph's requantization is listed as an integer engine applies it: per output channel an
int32 multiplier and a right shift (runtime/integer.py).

Exit status 0 when every convolution asked for (default: every conv followed by a BatchNorm)
has no bias once BatchNorm is folded into it, or when the ONNX graph holds only weight-only
convolutions, ReLU and layout operators (INT8: every conv quantized, every zero point 0);
1 otherwise.
"""
import argparse
import os

from ssd_nobias import cli
from ssd_nobias.errors import DataError
from ssd_nobias.runtime.accelerator import FLOAT_ONNX, INT8_ONNX


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--params", metavar="FILE",
                       help="a .params file: a checkpoint, an exported or a model-zoo one")
    which.add_argument("--accelerator", metavar="DIR|FILE",
                       help="an accelerator folder written by export (its float graph, the "
                            "INT8 one with --int8) or one .onnx graph, checked against the "
                            "accelerator's rules")
    p.add_argument("--int8", action="store_true", help="with --accelerator DIR: its INT8 graph")
    p.add_argument("--symbol", help="its -symbol.json, to pair convs and norms by the graph")
    p.add_argument("--expect-bias-free", nargs="+", default=[], metavar="GLOB",
                   help="convolution names that must have no bias once folded")
    p.add_argument("--summary", action="store_true", help="print only the verdict line")
    cli.retired(p, "--onnx", "names a whole model in eval and detect; audit an accelerator "
                             "graph with --accelerator DIR [--int8] or --accelerator FILE.onnx")
    args = p.parse_args(argv)
    if args.int8 and not args.accelerator:
        p.error("--int8 goes with --accelerator DIR")
    # MXNet and ONNX are imported only now: --help answers at once
    from ssd_nobias.export.audit import audit, expected, format_audit
    from ssd_nobias.export.proof import prove
    from ssd_nobias.runtime.integer import IntegerAccelerator, format_requant

    if args.accelerator:
        graph = args.accelerator
        if os.path.isdir(graph):
            graph = os.path.join(graph, INT8_ONNX if args.int8 else FLOAT_ONNX)
        proof = prove(graph)
        print(proof.summary())
        if proof.problems and not args.summary:
            print("\n".join(f"  {problem}" for problem in proof.problems))
        if proof.ok and proof.int8:  # what an integer engine needs to run it
            try:
                table = IntegerAccelerator(graph).requant_table()
                print(format_requant(table, per_layer=not args.summary))
            except DataError as err:  # int32 heads: the head convs end in float
                print(f"requantization: not listed: {err}")
        return 0 if proof.ok else 1
    report = audit(args.params, args.symbol)
    asked = expected(report, args.expect_bias_free)
    text = format_audit(report, asked)
    print(text.splitlines()[-1] if args.summary else text)
    return 0 if all(r.bias_free for r in asked) else 1

