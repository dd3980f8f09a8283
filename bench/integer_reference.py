"""The integer-only reference against ONNX Runtime and OpenVINO on an INT8 accelerator graph:
each layer's output given ONNX Runtime's own input (what that layer alone does; OpenVINO runs
each layer cut out of the graph), the 12 head outputs and every layer end to end (what the
drift of early ties becomes) for both runtimes, and val mAP of the pairs through the same host
part. On a CPU without VNNI (or OpenVINO held there by ONEDNN_MAX_CPU_ISA=AVX2) each runtime's
layers are compared with the reference emulating its pair-saturating kernels, and with the
exact result; the val mAP of those emulations is measured on any CPU.

    python bench/integer_reference.py --config runs/demo/config.yaml \
        --accelerator runs/demo/export/accelerator [--graph accelerator.int8.onnx]
        [--images 16] [--out FILE.json] [--onnxruntime-layers-only]
"""
import os
import time

import numpy as np

from ssd_nobias import cli
from ssd_nobias.atomic import write_json
from ssd_nobias.data.datasets import val_set
from ssd_nobias.data.transforms import ValTransform
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.evaluation.evaluate import evaluate_checkpoint
from ssd_nobias.machine import cpu_info
from ssd_nobias.runtime.accelerator import INT8_ONNX
from ssd_nobias.runtime.integer import IntegerAccelerator, lsb_differences
from ssd_nobias.onnx_files import load_onnx
from ssd_nobias.runtime.kernels import int8_kernels
from ssd_nobias.runtime.onnxrt import session
from ssd_nobias.runtime.openvino import OpenVinoAccelerator, OpenVinoGraph, run_layer


def totals(counts: dict) -> dict:
    keys = ("values", "equal", "one_lsb", "more")
    out = {k: sum(c[k] for c in counts.values()) for k in keys}
    out["max_lsb"] = max(c["max_lsb"] for c in counts.values())
    out["within_one_lsb"] = (out["equal"] + out["one_lsb"]) / out["values"]
    return out


def all_layers_openvino(path: str, x: np.ndarray, ref: IntegerAccelerator) -> dict:
    """Every layer's quantized output as OpenVINO computes the whole graph: each read from the
    DequantizeLinear that follows it (made a graph output), over its scale."""
    from onnx import numpy_helper

    graph = load_onnx(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    layers = {c.output for c in ref.convs}
    read = {node.output[0]: (node.input[0], float(inits[node.input[1]])) for node in graph.node
            if node.op_type == "DequantizeLinear" and node.input[0] in layers}
    ov = OpenVinoGraph(path, extra_outputs=list(read))
    results = dict(zip(ov.output_names, ov.run({"data": x})))
    return {q: np.rint(results[dq] / scale) for dq, (q, scale) in read.items()
            if dq in results}


def first_differing(reference: dict, other: dict, names: list) -> str:
    """The first tensor, in graph order, where `other` differs from the reference at all."""
    return next((n for n in names if np.any(reference[n] != other[n])), "none")


def onnxruntime_layers(args, path: str, count: int, ort: dict, names: list, forced) -> int:
    """ONNX Runtime's layers, each given its own input, against the exact result and against
    the emulation of the pair-saturating kernels; which of the two its kernels here are."""
    report = {"model": path, "images": count, "cpu": cpu_info().describe(),
              "kernels": {"onnxruntime": int8_kernels("onnxruntime")}}
    for key, kind in (("per_layer_same_input_exact", "exact"),
                      ("per_layer_same_input_emulated", "onnxruntime")):
        report[key] = totals(lsb_differences(forced(kind), ort, names))
        t = report[key]
        print(f"{key:30s} {t['values']:9d} values: {t['within_one_lsb']:.5%} within 1 LSB, "
              f"max {t['max_lsb']} LSB")
    print(f"ONNX Runtime's kernels here: {report['kernels']['onnxruntime']}; {report['cpu']}")
    if args.out:
        write_json(args.out, report)
    return 0


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--accelerator", required=True, metavar="DIR",
                   help="an accelerator folder with accelerator.int8.onnx")
    p.add_argument("--graph", default=INT8_ONNX,
                   help="which INT8 graph of the folder (default %(default)s)")
    p.add_argument("--images", type=int, default=16, help="val images for the LSB counts")
    p.add_argument("--out", metavar="FILE.json", help="also write the figures here")
    p.add_argument("--onnxruntime-layers-only", action="store_true",
                   help="only ONNX Runtime's layers against the exact result and its kernels' "
                        "emulation (fast enough to run under qemu-x86_64 -cpu Haswell)")
    args = p.parse_args(argv)
    cfg = cli.config_from(args)
    path = os.path.join(args.accelerator, args.graph)
    ref = IntegerAccelerator(path)
    dataset, _ = val_set(cfg)
    transform = ValTransform(Preprocess.from_config(cfg))
    count = min(args.images, len(dataset))
    x = np.stack([transform(*dataset[i])[0].asnumpy() for i in range(count)])

    names = [c.output for c in ref.convs]
    ort = dict(zip(names, session(path, extra_outputs=names).run(names, {"data": x})))
    xq = ref.quantize_input(x)

    def forced(kind: str) -> dict:
        """Each layer on ONNX Runtime's own input, as `kind` of kernels computes it."""
        return {conv.output: conv(xq if conv.source == ref.input_name else ort[conv.source],
                                  kind) for conv in ref.convs}
    if args.onnxruntime_layers_only:
        return onnxruntime_layers(args, path, count, ort, names, forced)
    start = time.perf_counter()
    ours = ref.run_quantized(xq)
    seconds = time.perf_counter() - start
    kernels = {runtime: int8_kernels(runtime) for runtime in ("onnxruntime", "openvino")}
    exact, as_ort, as_openvino = (forced(k) for k in ("exact", kernels["onnxruntime"],
                                                      kernels["openvino"]))
    heads = [q for _, q, _ in ref.heads]
    openvino = {q: np.rint(out / scale) for (_, q, scale), out in
                zip(ref.heads, OpenVinoAccelerator(path)(x))}
    openvino_forced = {conv.output: run_layer(path, conv.source, conv.output, ort[conv.source])
                       for conv in ref.convs if conv.source != ref.input_name}
    later = list(openvino_forced)
    openvino_layers = all_layers_openvino(path, x, ref)
    report = {
        "model": path, "images": count, "cpu": cpu_info().describe(), "kernels": kernels,
        "per_layer_same_input": totals(lsb_differences(as_ort, ort, names)),
        "per_layer_same_input_exact": totals(lsb_differences(exact, ort, names)),
        "heads_end_to_end": totals(lsb_differences(ours, ort, heads)),
        "per_layer_same_input_openvino": totals(lsb_differences(as_openvino, openvino_forced,
                                                                later)),
        "per_layer_same_input_openvino_exact": totals(lsb_differences(exact, openvino_forced,
                                                                      later)),
        "per_layer_same_input_onnxruntime_same_layers": totals(lsb_differences(as_ort, ort,
                                                                                later)),
        "heads_end_to_end_openvino": totals(lsb_differences(ours, openvino, heads)),
        "all_layers_end_to_end": totals(lsb_differences(ours, ort, names)),
        "all_layers_end_to_end_openvino": totals(lsb_differences(ours, openvino_layers,
                                                                 list(openvino_layers))),
        "first_layer_differing": {
            "onnxruntime": first_differing(ours, ort, names),
            "openvino": first_differing(ours, openvino_layers, list(openvino_layers))},
        "max_accumulator": ref.max_accumulator,
        "integer_images_per_s": count / seconds,
        "requantization": ref.requant_table(),
    }
    metric = {}
    for runtime in ("onnxruntime", "openvino", "integer", "onnxruntime-novnni",
                    "openvino-novnni"):
        result = evaluate_checkpoint(cfg, None, os.path.join(cfg.output_dir, "bench_integer",
                                                             runtime),
                                     progress=False, accelerator_dir=path, runtime=runtime)
        metric[runtime] = result.value
    report["val"] = {"metric": result.metric, **metric}
    print(f"kernels on this CPU: {kernels} ('exact' or the runtime whose pair-saturating "
          f"kernels the reference emulates)")
    for key in ("per_layer_same_input", "per_layer_same_input_exact",
                "per_layer_same_input_onnxruntime_same_layers", "per_layer_same_input_openvino",
                "per_layer_same_input_openvino_exact", "heads_end_to_end",
                "heads_end_to_end_openvino",
                "all_layers_end_to_end", "all_layers_end_to_end_openvino"):
        t = report[key]
        print(f"{key:46s} {t['values']:9d} values: {t['equal'] / t['values']:.5%} equal, "
              f"{t['within_one_lsb']:.5%} within 1 LSB, max {t['max_lsb']} LSB")
    print(f"first layer differing from the integer result end to end: "
          f"{report['first_layer_differing']}")
    shifts = [s for row in report["requantization"] for s in row["shift"]]
    print(f"requantization: {len(ref.convs)} convs, int32 multipliers in [2^30, 2^31), right "
          f"shifts {min(shifts)}..{max(shifts)}; largest accumulator {ref.max_accumulator} "
          f"(int32 holds {2 ** 31 - 1})")
    print(f"val {result.metric}: ONNX Runtime pair {metric['onnxruntime']:.4f}, OpenVINO pair "
          f"{metric['openvino']:.4f}, integer pair {metric['integer']:.4f}; as computed on a CPU "
          f"without VNNI (emulated): ONNX Runtime {metric['onnxruntime-novnni']:.4f}, OpenVINO "
          f"{metric['openvino-novnni']:.4f}; integer reference "
          f"{report['integer_images_per_s']:.2f} images/s (NumPy)")
    print(report["cpu"])
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
