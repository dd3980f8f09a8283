"""The host part of a split SSD: what runs after the accelerator's 12 raw head outputs.

For an INT8 accelerator graph, each output channel multiplied by its scale (the head convs'
channels were equalized before quantization, export/int8.py), head biases added per channel,
the heads laid out as (N, anchors, classes + 1) and (N,
anchors, 4), softmax, box decoding against the anchors and GluonCV's per-class NMS, in NumPy
alone (no MXNet). `host.json` holds the settings, `host.npz` the biases and anchors.

GluonCV's post-processing, reproduced: a (anchor, class) pair is a candidate when its
probability is above `score_thresh`; candidates are ordered by score, ties in class-major
order (box_nms's stable sort of the per-class concatenation); the best `nms_topk` enter
greedy NMS within their class (IoU > nms_thresh suppresses); the best `post_nms` survivors
are returned, padded with -1.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

HOST_JSON, HOST_NPZ = "host.json", "host.npz"


@dataclass(frozen=True)
class HostSpec:
    """Everything but the arrays: class count, heads, decoding and NMS settings."""

    num_classes: int  # foreground classes
    heads: int  # feature maps; the accelerator outputs cls0..cls{heads-1}, box0..
    decode_std: Tuple[float, float, float, float]
    decode_clip: float  # exp() argument clip of the size offsets; <= 0: none
    score_thresh: float
    nms_thresh: float
    nms_topk: int
    post_nms: int


def head_names(heads: int) -> List[str]:
    """The accelerator's outputs, in the order the host takes them."""
    return [f"cls{i}" for i in range(heads)] + [f"box{i}" for i in range(heads)]


class HostPart:
    """Raw head outputs in, GluonCV detections out: (ids, scores, boxes) as (N, post_nms, 1),
    (N, post_nms, 1), (N, post_nms, 4) float32, boxes x0 y0 x1 y1 in input pixels.
    `channel_scales`: the INT8 graph's per-channel output scales (None for the float graph)."""

    def __init__(self, spec: HostSpec, anchors: np.ndarray,
                 biases: Sequence[Optional[np.ndarray]],
                 channel_scales: Optional[Sequence[np.ndarray]] = None):
        self.spec = spec
        self.anchors = np.asarray(anchors, np.float32).reshape(-1, 4)  # center: cx cy w h
        self.biases = [None if b is None else np.asarray(b, np.float32).reshape(1, -1, 1, 1)
                       for b in biases]
        self.channel_scales = None if channel_scales is None else \
            [np.asarray(s, np.float32).reshape(1, -1, 1, 1) for s in channel_scales]

    # -- files -----------------------------------------------------------------------------
    def save(self, folder: str) -> None:
        from ssd_nobias.atomic import replacing, write_json  # the writer is the exporter, with MXNet
        write_json(os.path.join(folder, HOST_JSON), dict(
            asdict(self.spec), inputs=head_names(self.spec.heads),
            biases=[b is not None for b in self.biases],
            int8_scales=self.channel_scales is not None,
            formula="INT8 graph: x_i *= int8_scale_i per channel; logits = cls_i + bias; "
                    "softmax; boxes decoded against anchors (center form, GluonCV's "
                    "box_decode); per-class NMS"))
        arrays = {"anchors": self.anchors}
        arrays.update({f"bias{i}": b.reshape(-1) for i, b in enumerate(self.biases)
                       if b is not None})
        arrays.update({f"int8_scale{i}": s.reshape(-1)
                       for i, s in enumerate(self.channel_scales or [])})
        with replacing(os.path.join(folder, HOST_NPZ), ".npz") as tmp:
            np.savez(tmp, **arrays)

    @classmethod
    def load(cls, folder: str, int8: bool = False) -> "HostPart":
        """The host part in `folder`: for the float32 accelerator graph, or with `int8` for the
        INT8 one (with its channel scales)."""
        with open(os.path.join(folder, HOST_JSON)) as f:
            spec = json.load(f)
        arrays = np.load(os.path.join(folder, HOST_NPZ))
        fields = HostSpec.__dataclass_fields__
        host_spec = HostSpec(**{k: tuple(v) if k == "decode_std" else v
                                for k, v in spec.items() if k in fields})
        biases = [arrays[f"bias{i}"] if present else None
                  for i, present in enumerate(spec["biases"])]
        scales = [arrays[f"int8_scale{i}"] for i in range(2 * host_spec.heads)] \
            if int8 and spec.get("int8_scales") else None
        return cls(host_spec, arrays["anchors"], biases, scales)

    # -- computation -----------------------------------------------------------------------
    def raw(self, outputs: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(class logits (N, A, C + 1), box offsets (N, A, 4)) from the 12 head outputs."""
        heads = self.spec.heads
        if len(outputs) != 2 * heads:
            raise ValueError(f"expected {2 * heads} head outputs, got {len(outputs)}")
        n = outputs[0].shape[0]
        parts = []
        for i, out in enumerate(outputs):
            out = np.asarray(out, np.float32)
            if self.channel_scales is not None:
                out = out * self.channel_scales[i]
            if self.biases[i] is not None:
                out = out + self.biases[i]
            parts.append(out.transpose(0, 2, 3, 1).reshape(n, -1))
        logits = np.concatenate(parts[:heads], 1).reshape(n, -1, self.spec.num_classes + 1)
        offsets = np.concatenate(parts[heads:], 1).reshape(n, -1, 4)
        return logits, offsets

    def decode(self, offsets: np.ndarray) -> np.ndarray:
        """GluonCV's box_decode (center anchors) in float32: corners in input pixels."""
        s = np.asarray(self.spec.decode_std, np.float32)
        a = self.anchors
        cx = offsets[..., 0] * s[0] * a[:, 2] + a[:, 0]
        cy = offsets[..., 1] * s[1] * a[:, 3] + a[:, 1]
        dw, dh = offsets[..., 2] * s[2], offsets[..., 3] * s[3]
        if self.spec.decode_clip > 0:
            dw, dh = np.minimum(dw, self.spec.decode_clip), np.minimum(dh, self.spec.decode_clip)
        with np.errstate(over="ignore"):  # an untrained model may overflow, as MXNet's does
            hw = np.exp(dw) * a[:, 2] * np.float32(0.5)
            hh = np.exp(dh) * a[:, 3] * np.float32(0.5)
        return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], -1).astype(np.float32)

    def __call__(self, outputs: Sequence[np.ndarray]
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, offsets = self.raw(outputs)
        shifted = logits - logits.max(-1, keepdims=True)
        e = np.exp(shifted)
        probs = e / e.sum(-1, keepdims=True)
        boxes = self.decode(offsets)
        p = self.spec
        ids = np.full((len(probs), p.post_nms, 1), -1, np.float32)
        scores, out_boxes = ids.copy(), np.full((len(probs), p.post_nms, 4), -1, np.float32)
        for n in range(len(probs)):
            cls, score, box = per_class_nms(probs[n, :, 1:], boxes[n], p.score_thresh,
                                            p.nms_thresh, p.nms_topk, p.post_nms)
            ids[n, :len(cls), 0], scores[n, :len(cls), 0], out_boxes[n, :len(cls)] = \
                cls, score, box
        return ids, scores, out_boxes


def per_class_nms(probs: np.ndarray, boxes: np.ndarray, score_thresh: float, nms_thresh: float,
                  topk: int, keep: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GluonCV's decoder + box_nms for one image: probs (A, C) of the foreground classes,
    boxes (A, 4); the kept (class ids, scores, boxes), best first."""
    anchors = probs.shape[0]
    flat = probs.T.reshape(-1)  # class-major, as the per-class concatenation
    candidates = np.flatnonzero(flat > score_thresh)
    if len(candidates) > topk:  # the topk best, ties at the cut in index order, as a full sort
        scores = flat[candidates]
        kth = np.partition(scores, len(scores) - topk)[len(scores) - topk]
        above = np.flatnonzero(scores > kth)
        ties = np.flatnonzero(scores == kth)[: topk - len(above)]
        candidates = candidates[np.sort(np.concatenate([above, ties]))]
    order = candidates[np.argsort(-flat[candidates], kind="stable")]
    cls, anchor = order // anchors, order % anchors
    b = boxes[anchor]
    suppressed = np.zeros(len(order), bool)
    for c in np.unique(cls):  # NMS is per class: one small IoU matrix per class
        members = np.flatnonzero(cls == c)  # best first
        if len(members) > 1:
            suppressed[members[_greedy_nms(b[members], nms_thresh)]] = True
    kept = np.flatnonzero(~suppressed)[:keep]
    return cls[kept].astype(np.float32), flat[order[kept]], b[kept]


def _greedy_nms(b: np.ndarray, nms_thresh: float) -> np.ndarray:
    """Which of the boxes b (best first) greedy NMS suppresses, as box_nms computes IoU."""
    x0, y0, x1, y1 = (np.ascontiguousarray(c) for c in b.T)
    bw, bh = x1 - x0, y1 - y0
    area = np.where((bw < 0) | (bh < 0), 0, bw * bh)  # box_nms: an inverted box has no area
    zero = np.float32(0)
    w = np.maximum(np.minimum.outer(x1, x1) - np.maximum.outer(x0, x0), zero)
    h = np.maximum(np.minimum.outer(y1, y1) - np.maximum.outer(y0, y0), zero)
    inter = w * h
    union = np.add.outer(area, area) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        over = np.triu(np.where(union > 0, inter / union, zero) > nms_thresh, 1)
    suppressed = np.zeros(len(b), bool)
    for i in np.flatnonzero(over.any(1)):  # only rows that can suppress anything
        if not suppressed[i]:
            suppressed |= over[i]
    return suppressed
