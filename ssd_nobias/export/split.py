"""`export_ssd.py --formats accelerator [int8]`: the accelerator graph and host part written beside
the deploy graph, checked against it, proven from the saved files, reported."""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Union

import mxnet as mx
import numpy as np

from ssd_nobias.config import base_size, eval_metric
from ssd_nobias.devices import inference_device
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.datasets import val_set
from ssd_nobias.errors import UserError, require
from ssd_nobias.export.deploy import (PARITY_RTOL, ParityError, add_to_report, fold_ssd,
                                      raw_outputs, relative_error)
from ssd_nobias.runtime.onnxrt import session
from ssd_nobias.model.ssd import layer_names
from ssd_nobias.evaluation.evaluate import EvalSettings, evaluate
from ssd_nobias.runtime.predictors import SplitPredictor, import_graph, load_deploy, load_trained
from ssd_nobias.export.accelerator import deploy_prefix, host_onnx, write_float_pair
from ssd_nobias.runtime.accelerator import (ACCELERATOR_DIR, FLOAT_ONNX, HOST_INT8_ONNX, HOST_ONNX,
                                            INT8_CPU_ONNX, INT8_ONNX, INT8_SIGNED_ONNX,
                                            OnnxAccelerator)
from ssd_nobias.runtime.host import HostPart
from ssd_nobias.export.int8 import layer_tensor, quantize, sqnr_db, weight_scale_spread
from ssd_nobias.export.inputs import calibration_inputs, parity_inputs
from ssd_nobias.export.proof import Proof, prove
from ssd_nobias.onnx_files import load_onnx

class ProofError(UserError):
    """A written accelerator graph breaks a rule of the bias-free integer deployment."""


def calibration_images(cfg, count: int, seed: int = 0) -> List[np.ndarray]:
    """`count` training images (a seeded draw), resized and normalized as for inference."""
    return calibration_inputs(cfg, count, seed)[0]


INT8_KEYS = ("int8", "int8_signed", "int8_cpu")  # the INT8 graphs' entries in the report


def export_accelerator(cfg, params_path: str, export_dir: str, int8: bool = False,
                       calib_images: Union[int, str] = 64, calib_method: str = "minmax",
                       int8_heads: str = "int8", progress: bool = True,
                       device: Optional[str] = None, int8_signed: bool = False,
                       int8_cpu: bool = False, sample_images: Optional[str] = None,
                       evaluate: bool = False) -> Dict:
    """Write `export_dir`/accelerator/ (see export/accelerator.py) after export_deploy wrote the
    deploy graph there; with `int8` also accelerator.int8.onnx (head outputs `int8_heads`:
    int8, or the convs' int32 accumulators, see export/int8.py). Adds an 'accelerator' entry to
    export_report.json. Raises ProofError when a saved graph breaks its rules, ParityError
    when the pair's raw outputs differ from the trained model's by more than PARITY_RTOL.
    `device`: where the trained model runs for the parity check (devices.inference_device).
    `int8_signed`: also accelerator.int8-signed.onnx, every activation signed int8 with zero
    point 0 (Conv -> Relu -> QuantizeLinear: what TensorRT takes), int8 heads; its report
    entry 'int8_signed' has the same figures as 'int8'. `int8_cpu`: also
    accelerator.int8-cpu.onnx, the uint8 graph with 7-bit weights, for CPUs without VNNI
    (their pair-saturating kernels cannot overflow on it); entry 'int8_cpu'. Neither variant
    changes accelerator.int8.onnx. Without the dataset: parity on `sample_images` (or noise,
    see export/inputs.py) and calibration on `calib_images` given as a folder or glob (a
    count draws that many training images). `evaluate`: each INT8 graph's entry gets "val",
    the val metric of the float32 and INT8 pairs (needs the dataset); otherwise it says
    "val": {"measured": false}."""
    require("onnx", "onnxruntime", extra="onnx", what="the accelerator export")
    deploy_prefix(export_dir, cfg.model.name)  # before any training-side work
    ctx = inference_device(cfg.train.ctx, device)
    net, classes = load_trained(cfg, params_path, ctx)
    if evaluate:
        dataset, classes = val_set(cfg)  # before any work: fails now if the dataset is absent
    x, source = parity_inputs(cfg, sample_images)
    x = x.as_in_context(ctx[0])
    trained = raw_outputs(net, x)
    deploy, _ = load_deploy(export_dir, ctx)
    deploy_det = [a.asnumpy() for a in deploy(x)]

    folder = os.path.join(export_dir, ACCELERATOR_DIR)
    _, host, prefix, float_path = write_float_pair(fold_ssd(net, ctx), x, export_dir, folder,
                                                   cfg.model.name, base_size(cfg))
    float_acc = OnnxAccelerator(float_path)
    outputs = float_acc(x.asnumpy())
    host_onnx(host, os.path.join(folder, HOST_ONNX), [o.shape for o in outputs])

    report = {"folder": folder, "symbol": prefix + "-symbol.json",
              "params": prefix + "-0000.params", "onnx": float_path,
              "host": [os.path.join(folder, n) for n in ("host.json", "host.npz", HOST_ONNX)],
              "head_biases_on_host": sum(b is not None for b in host.biases),
              "proof": _proof_entry(prove(float_path)),
              "parity": dict(_parity(prefix, host, x, outputs, trained, deploy_det, folder),
                             inputs=source)}
    variants = [("int8", INT8_ONNX, int8_heads, "uint8", False)] if int8 else []
    if int8_signed:
        variants.append(("int8_signed", INT8_SIGNED_ONNX, "int8", "int8", False))
    if int8_cpu:
        variants.append(("int8_cpu", INT8_CPU_ONNX, "int8", "uint8", True))
    for key, name, heads, activations, seven_bit in variants:
        report[key] = _int8(cfg, float_path, os.path.join(folder, name), host, calib_images,
                            calib_method, heads, progress, activations, seven_bit)
        report[key]["val"] = {
            "measured": True, "metric": eval_metric(cfg),
            "float32_pair": pair_val_map(cfg, dataset, classes, folder, FLOAT_ONNX, progress),
            "int8_pair": pair_val_map(cfg, dataset, classes, folder, name, progress)} \
            if evaluate else {"measured": False, "why": "not asked (export --eval, or the eval "
                                                        "command on the pair)"}
    add_to_report(export_dir, "accelerator", report)
    _raise_failures(report, export_dir)
    return report


def _parity(prefix: str, host: HostPart, x: mx.nd.NDArray, outputs: List[np.ndarray],
            trained, deploy_det, folder: str) -> Dict:
    """The pair against the trained model (raw outputs) and the deploy graph (detections)."""
    symbol = import_graph(prefix, x.context)
    mx_logits, mx_offsets = host.raw([o.asnumpy() for o in symbol(x)])
    logits, offsets = host.raw(outputs)
    n = len(logits)
    ids, scores, boxes = host(outputs)
    onnx_host = session(os.path.join(folder, HOST_ONNX))
    names = [i.name for i in onnx_host.get_inputs()]
    h_ids, h_scores, h_boxes = onnx_host.run(["ids", "scores", "bboxes"],
                                             dict(zip(names, outputs)))
    return {
        "images": int(n),
        "mxnet": {"class_logits": relative_error(mx_logits.reshape(n, -1), trained[0]),
                  "box_offsets": relative_error(mx_offsets.reshape(n, -1), trained[1])},
        "onnx": {"class_logits": relative_error(logits.reshape(n, -1), trained[0]),
                 "box_offsets": relative_error(offsets.reshape(n, -1), trained[1])},
        # after NMS, for information (as the deploy graph's own parity): convolutions summed
        # in another order may reorder or swap near-tied detections
        "same_detections_as_deploy": _same(deploy_det, (ids, scores, boxes)),
        "host_onnx_same_as_numpy": _same((ids, scores, boxes), (h_ids, h_scores, h_boxes))}


def _same(want, got) -> bool:
    return bool(np.array_equal(want[0], got[0]) and
                relative_error(got[1], want[1]) <= PARITY_RTOL and
                relative_error(got[2], want[2]) <= PARITY_RTOL)


def _proof_entry(proof: Proof) -> Dict:
    return {"file": proof.path, "ok": proof.ok, "ops": proof.ops, "convs": proof.convs,
            "quantized_convs": proof.quantized_convs, "zero_points": proof.zero_points,
            "quantized_types": proof.types, "problems": proof.problems,
            **({"tensorrt_form": proof.tensorrt_form, "not_tensorrt_because": proof.tensorrt}
               if proof.int8 else {})}


def pair_val_map(cfg, dataset, classes, folder: str, graph: str, progress: bool) -> float:
    """The pair's val metric (the accelerator graph `graph` of the folder, and the host part;
    its channel scales apply if the folder's host part has them)."""
    settings = EvalSettings(cfg.eval.batch_size, cfg.data.num_workers, eval_metric(cfg))
    pair = SplitPredictor(folder, graph != FLOAT_ONNX, graph=graph)
    result = evaluate(pair, dataset, classes, [mx.cpu()],
                      Preprocess.from_config(cfg), settings, progress=progress)
    return round(result.value, 6)


def _int8(cfg, float_path: str, int8_path: str, host: HostPart, count: Union[int, str],
          method: str,
          heads: str, progress: bool, activations: str = "uint8",
          seven_bit_weights: bool = False) -> Dict:
    """Quantize; with int8 head outputs, save the host part again with their scales and write
    host.int8.onnx; prove, and measure per layer: weight-scale spread and SQNR."""
    images, calibration = calibration_inputs(cfg, count)
    scales = quantize(float_path, int8_path, images, method, progress, heads, activations,
                      seven_bit_weights)
    folder = os.path.dirname(int8_path)
    host_int8 = os.path.join(folder, HOST_INT8_ONNX)
    entry = {"file": int8_path, "head_outputs": heads, "activations": activations,
             "weight_bits": 7 if seven_bit_weights else 8,
             "calibration": dict(calibration, method=method),
             "proof": _proof_entry(prove(int8_path))}
    if scales is None:
        if os.path.exists(host_int8):
            os.remove(host_int8)  # an earlier export's, for int8 outputs
    else:
        outputs = OnnxAccelerator(int8_path)(np.stack(images[:2]))
        host = HostPart(host.spec, host.anchors, host.biases, scales)
        host.save(folder)
        host_onnx(host, host_int8, [o.shape for o in outputs], int8=True)
        onnx_host = session(host_int8)
        got = onnx_host.run(["ids", "scores", "bboxes"],
                            dict(zip([i.name for i in onnx_host.get_inputs()], outputs)))
        entry["host"] = host_int8
        entry["host_onnx_same_as_numpy"] = _same(host(outputs), got)
    entry["layers"] = layer_figures(float_path, int8_path, images, scales)
    return entry


def layer_tensors(float_path: str, int8_path: str) -> Dict[str, str]:
    """Each quantized activation of the float graph -> its dequantized tensor in the INT8
    graph (the network's layer outputs: ReLU outputs and the heads)."""
    model = load_onnx(int8_path)
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    float_names = {o for n in load_onnx(float_path).graph.node for o in n.output}
    pairs = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        name = layer_tensor(node.input[0])
        dq = [c for c in consumers.get(node.output[0], []) if c.op_type == "DequantizeLinear"]
        if name in float_names and dq:
            pairs[name] = dq[0].output[0]
    for output in model.graph.output:  # head outputs left as int32 accumulators
        if output.name in float_names:
            pairs.setdefault(output.name, output.name)
    return pairs


def layer_figures(float_path: str, int8_path: str, images: List[np.ndarray],
                   scales: Optional[List[np.ndarray]]) -> List[Dict]:
    """Per layer (in graph order): weight-scale spread of the conv that makes it, how much of
    the activation's range its median channel uses (channel_range_used), SQNR of the INT8
    graph's output (a head output times its channel `scales`) against float32 on the
    calibration images."""
    pairs = layer_tensors(float_path, int8_path)
    float_graph = load_onnx(float_path).graph
    spread = weight_scale_spread(int8_path)
    names = [n for n in (node.output[0] for node in float_graph.node) if n in pairs]
    outputs = {o.name for o in float_graph.output}
    ref_sess = session(float_path, extra_outputs=[n for n in names if n not in outputs])
    q_sess = session(int8_path, extra_outputs=[pairs[n] for n in names if pairs[n] != n])
    dequant = dict(zip([o.name for o in float_graph.output], scales or []))
    ref = {n: [] for n in names}
    got = {n: [] for n in names}
    for image in images:
        batch = {"data": image[None].astype(np.float32)}
        for n, value in zip(names, ref_sess.run(names, batch)):
            ref[n].append(value)
        for n, value in zip(names, q_sess.run([pairs[n] for n in names], batch)):
            if n in dequant:
                value = value * dequant[n].reshape(1, -1, 1, 1)
            got[n].append(value)
    relus = [node.output[0] for node in float_graph.node if node.op_type == "Relu"]
    units = dict(zip(relus, layer_names())) if len(relus) == len(layer_names()) else {}
    layers = []
    for n in names:
        layers.append({"layer": units.get(n, n), "tensor": n,
                       "weight_scale_max_over_median": spread.get(n),
                       "channel_range_used": channel_range_used(ref[n]),
                       "sqnr_db": round(sqnr_db(ref[n], got[n]), 2)})
    return layers


def channel_range_used(outputs: List[np.ndarray]) -> float:
    """How much of a tensor's range (one scale for all its channels) its median channel uses:
    median over channels of max |y_c|, over max |y| (1: every channel spans the range)."""
    peak = np.max([np.abs(o).max(axis=(0, 2, 3)) for o in outputs], axis=0)
    top = float(peak.max())
    return round(float(np.median(peak)) / top, 4) if top > 0 else 0.0


def _raise_failures(report: Dict, export_dir: str) -> None:
    for proof in [report["proof"]] + [report[k]["proof"] for k in INT8_KEYS if k in report]:
        if not proof["ok"]:
            raise ProofError(f"{proof['file']} is not a bias-free accelerator graph: "
                             f"{'; '.join(proof['problems'][:5])}")
    p = report["parity"]
    worst = max(v for part in ("mxnet", "onnx") for v in p[part].values())
    if worst > PARITY_RTOL:
        raise ParityError(f"the accelerator graph + host part differ from the trained model by "
                          f"{worst:.3g} of their magnitude (allowed {PARITY_RTOL:g}); see "
                          f"{export_dir}/export_report.json")


def format_accelerator(report: Dict) -> str:
    """The accelerator export's proof, parity and INT8 figures, for the console."""
    p = report["parity"]
    rows = [f"accelerator graph: {report['onnx']} (+ MXNet {report['symbol']}); host part: "
            f"{', '.join(report['host'])}; {report['head_biases_on_host']} head biases moved "
            f"to the host",
            f"proof: {_proof_line(report['proof'])}",
            f"parity on {p['images']} images against the trained model: MXNet class logits "
            f"{p['mxnet']['class_logits']:.2g}, box offsets {p['mxnet']['box_offsets']:.2g}; "
            f"ONNX {p['onnx']['class_logits']:.2g}, {p['onnx']['box_offsets']:.2g}; same "
            f"detections as the deploy graph: {p['same_detections_as_deploy']}; host.onnx = "
            f"NumPy host: {p['host_onnx_same_as_numpy']}"]
    for q in (report[k] for k in INT8_KEYS if k in report):
        sqnr = [layer["sqnr_db"] for layer in q["layers"]]
        spread = [layer["weight_scale_max_over_median"] for layer in q["layers"]
                  if layer["weight_scale_max_over_median"] is not None]
        v, c = q["val"], q["calibration"]
        rows += [f"INT8 ({q.get('activations', 'uint8')} activations, "
                 f"{q.get('weight_bits', 8)}-bit weights): {q['file']}, "
                 f"{c['method']} on {c['images']} "
                 f"{'training images' if 'split' in c else 'images of ' + c['source']}, head "
                 f"outputs "
                 f"{q['head_outputs']}" + (f"; host part {q['host']} (dequantizes them), "
                                           f"= NumPy host: {q['host_onnx_same_as_numpy']}"
                                           if "host" in q else ""),
                 f"proof: {_proof_line(q['proof'])}",
                 f"per layer: SQNR {min(sqnr):.1f} to {max(sqnr):.1f} dB (median "
                 f"{float(np.median(sqnr)):.1f}); weight scales max/median up to "
                 f"{max(spread):.1f}",
                 f"val {v['metric']}: float32 pair {v['float32_pair']:.4f}, INT8 pair "
                 f"{v['int8_pair']:.4f}" if v["measured"] else f"val: not measured, {v['why']}"]
    return "\n".join(rows)


def _proof_line(proof: Dict) -> str:
    ops = ", ".join(f"{k} {v}" for k, v in sorted(proof["ops"].items()))
    line = f"{'OK' if proof['ok'] else 'FAILED'}: {proof['convs']} Conv, none with a bias; {ops}"
    if proof["quantized_convs"]:
        types = ", ".join(f"{k} {v}" for k, v in sorted(proof["quantized_types"].items()))
        line += (f"; {proof['quantized_convs']} quantized, {proof['zero_points']} zero points "
                 f"all 0; activations {types}")
    return line
