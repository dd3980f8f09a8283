"""Detection metrics over a whole val set: VOC07 11-point and VOC all-point mAP, or COCO AP.

Every val image is predicted exactly once, whatever the batch size; predictions are scaled back
to original image pixels, so COCO's area ranges mean what they say.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from gluoncv.utils.bbox import bbox_xyxy_to_xywh
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric

from ssd_nobias.atomic import make_folder, write_json
from ssd_nobias.config import eval_metric
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.coco import COCOFormatDetection
from ssd_nobias.data.datasets import val_set
from ssd_nobias.data.images import read_image
from ssd_nobias.data.loaders import split_batch, val_loader
from ssd_nobias.data.transforms import boxes_to_image
from ssd_nobias.evaluation.confusion import ConfusionMatrix
from ssd_nobias.plots import (PRCurve, detections_grid, plot_confusion_matrix, plot_pr_curves,
                              save_image)
from ssd_nobias.progress import tracked
from ssd_nobias.provenance import model_source, provenance
from ssd_nobias.runtime.predictors import Predictor, load_predictor

COCO_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class Detections:
    """Predictions and ground truth of one image, in original pixels."""

    index: int
    boxes: np.ndarray  # (N, 4) xmin ymin xmax ymax
    labels: np.ndarray  # (N,) int class ids
    scores: np.ndarray  # (N,)
    gt: np.ndarray  # (M, 5 or 6) label rows


@dataclass
class EvalResult:
    """What an evaluation found: the headline metric, all metrics, per-class AP, PR curves."""

    metric: str  # voc07 | voc | coco
    metrics: Dict[str, float]
    per_class: Dict[str, float]
    curves: Dict[str, PRCurve]
    num_images: int
    images_per_s: float
    samples: List[Detections] = field(default_factory=list)
    confusion: Optional[ConfusionMatrix] = None

    @property
    def value(self) -> float:
        """The headline number: VOC07 mAP, VOC mAP or COCO AP."""
        return self.metrics[{"voc07": "VOC07 mAP", "voc": "VOC mAP", "coco": "AP"}[self.metric]]

    def to_json(self) -> dict:
        record = {"metric": self.metric, "value": _num(self.value),
                  "metrics": {k: _num(v) for k, v in self.metrics.items()},
                  "per_class_ap": {k: _num(v) for k, v in self.per_class.items()},
                  "num_images": self.num_images, "images_per_s": round(self.images_per_s, 2)}
        if self.confusion is not None:
            record["confusion_matrix"] = self.confusion.to_json(list(self.per_class))
        return record


def _num(x: float) -> Optional[float]:
    return None if x is None or math.isnan(x) else round(float(x), 6)


@dataclass(frozen=True)
class EvalSettings:
    """How an evaluation runs: batch, loader workers, metric (voc07, voc or coco) and how many
    images to keep for detections.png."""

    batch_size: int = 32
    num_workers: int = 0
    metric: str = "voc07"
    num_samples: int = 0
    score_thresh: float = 0.5  # the confusion matrix's

    @classmethod
    def from_config(cls, cfg) -> "EvalSettings":
        return cls(cfg.eval.batch_size, cfg.data.num_workers, eval_metric(cfg),
                   cfg.eval.num_images, cfg.eval.score_thresh)


def predict(predictor: Predictor, dataset, ctx: Sequence[mx.Context], preprocess: Preprocess,
            batch_size: int = 32, num_workers: int = 0, progress: bool = False, transform=None
            ) -> Tuple[Iterator[Detections], Dict[str, float]]:
    """Yield every image's Detections in dataset order; timing['seconds'] sums the forwards.
    `transform`: another preprocessing than ValTransform's (val_loader)."""
    size = preprocess.size
    loader = val_loader(dataset, preprocess, batch_size, num_workers, transform)
    timing = {"seconds": 0.0, "images": 0}

    def run():
        index = 0
        for batch in tracked(loader, desc="eval", unit="batch", enabled=progress):
            images, labels, sizes = split_batch(batch, ctx)
            start = time.perf_counter()
            outputs = [predictor(x) for x in images]
            for ids, scores, boxes in outputs:
                boxes.wait_to_read()
            timing["seconds"] += time.perf_counter() - start
            for (ids, scores, boxes), label, wh in zip(outputs, labels, sizes):
                ids, scores, boxes = ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()
                label, wh = label.asnumpy(), wh.asnumpy()
                for i in range(ids.shape[0]):
                    keep = ids[i, :, 0] >= 0
                    box = boxes_to_image(boxes[i][keep], wh[i][0], wh[i][1], size)
                    gt = label[i][label[i][:, 4] >= 0]
                    yield Detections(index, box, ids[i, keep, 0].astype(int),
                                     scores[i, keep, 0], gt)
                    index += 1
            timing["images"] = index
        if index != len(dataset):
            raise RuntimeError(f"evaluated {index} images of {len(dataset)}")

    return run(), timing


def evaluate(predictor: Predictor, dataset, class_names: Sequence[str],
             ctx: Sequence[mx.Context], preprocess: Preprocess,
             settings: EvalSettings = EvalSettings(), out_dir: Optional[str] = None,
             progress: bool = False, transform=None) -> EvalResult:
    """mAP of a predictor on a dataset; metric 'voc07'/'voc' (both computed) or 'coco'.

    With out_dir, COCO detections are written there as `detections.json`.
    """
    metric, num_samples = settings.metric, settings.num_samples
    if metric not in ("voc07", "voc", "coco"):
        raise ValueError(f"metric must be voc07, voc or coco, not {metric!r}")
    if metric == "coco" and not isinstance(dataset, COCOFormatDetection):
        raise ValueError("the coco metric needs a COCO-format dataset (data.dataset: coco)")
    detections, timing = predict(predictor, dataset, ctx, preprocess, settings.batch_size,
                                 settings.num_workers, progress, transform)
    scorer = CocoScorer(dataset, out_dir) if metric == "coco" else VocScorer(class_names)
    samples = []
    confusion = ConfusionMatrix(len(class_names), settings.score_thresh)
    for det in detections:
        scorer.update(det)
        confusion.update(det.boxes, det.labels, det.scores, det.gt)
        if len(samples) < num_samples:
            samples.append(det)
    metrics, per_class, curves = scorer.result()
    seconds = max(timing["seconds"], 1e-9)
    return EvalResult(metric, metrics, per_class, curves, timing["images"],
                      timing["images"] / seconds, samples, confusion)


class VocScorer:
    """GluonCV's VOC07 11-point and VOC2010+ all-point mAP, difficult objects ignored."""

    def __init__(self, class_names: Sequence[str]):
        self.names = list(class_names)
        self.voc07 = VOC07MApMetric(iou_thresh=0.5, class_names=self.names)
        self.voc = VOCMApMetric(iou_thresh=0.5, class_names=self.names)

    def update(self, det: Detections) -> None:
        gt = det.gt
        difficult = gt[None, :, 5] if gt.shape[1] > 5 else None
        for m in (self.voc07, self.voc):
            m.update(det.boxes[None], det.labels[None], det.scores[None],
                     gt[None, :, :4], gt[None, :, 4], difficult)

    def result(self):
        if not self.voc07._n_pos:
            raise ValueError("the val set has no (non-difficult) ground-truth object")
        _, aps07 = self.voc07.get()
        _, aps = self.voc.get()
        recalls, precisions = self.voc07._recall_prec()  # cumulative PR, per class id
        per_class, curves = {}, {}
        for k, name in enumerate(self.names):
            per_class[name] = float(aps07[k])
            rec = recalls[k] if k < len(recalls) and recalls[k] is not None else np.zeros(0)
            prec = precisions[k] if k < len(precisions) and recalls[k] is not None \
                else np.zeros(0)
            curves[name] = PRCurve(np.asarray(rec), np.nan_to_num(np.asarray(prec)),
                                   float(np.nan_to_num(aps07[k])),
                                   int(self.voc07._n_pos.get(k, 0)))
        return {"VOC07 mAP": float(aps07[-1]), "VOC mAP": float(aps[-1])}, per_class, curves


class CocoScorer:
    """COCO AP/AP50/AP75/APs/APm/APl through pycocotools, on detections written as json."""

    def __init__(self, dataset: COCOFormatDetection, out_dir: Optional[str]):
        self.dataset = dataset
        self.out_dir = out_dir
        self.results: List[dict] = []

    def update(self, det: Detections) -> None:
        image_id = self.dataset.image_id(det.index)
        to_json = self.dataset.contiguous_id_to_json
        for box, label, score in zip(det.boxes, det.labels, det.scores):
            xywh = bbox_xyxy_to_xywh(tuple(float(v) for v in box))  # the loader's inverse
            self.results.append({"image_id": image_id, "category_id": to_json[int(label)],
                                 "bbox": [round(float(v), 2) for v in xywh],
                                 "score": round(float(score), 5)})

    def result(self):
        from pycocotools.cocoeval import COCOeval

        gt = self.dataset.coco
        path = os.path.join(self.out_dir or ".", "detections.json")
        if self.out_dir:
            write_json(path, self.results)
        names = list(self.dataset.classes)
        to_json = self.dataset.contiguous_id_to_json
        objects = {k: len(gt.getAnnIds(catIds=[to_json[k]], iscrowd=False))
                   for k in range(len(names))}
        if not self.results:
            nan = float("nan")
            return ({n: 0.0 for n in COCO_NAMES}, {n: nan for n in names},
                    {n: PRCurve(np.zeros(0), np.zeros(0), 0.0, objects.get(k, 0))
                     for k, n in enumerate(names)})
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(self.results)
            coco_eval = COCOeval(gt, dt, "bbox")
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        metrics = {n: float(v) for n, v in zip(COCO_NAMES, coco_eval.stats[:6])}
        precision = coco_eval.eval["precision"]  # [iou, recall, class, area, max dets]
        recall_points = coco_eval.params.recThrs
        per_class, curves = {}, {}
        for k, name in enumerate(names):
            p = precision[:, :, k, 0, -1]
            per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
            p50 = precision[0, :, k, 0, -1]
            valid = p50 > -1
            curves[name] = PRCurve(recall_points[valid], p50[valid],
                                   float(np.nan_to_num(per_class[name])), objects[k])
        return metrics, per_class, curves


def format_table(result: EvalResult) -> str:
    """Per-class AP and the summary metrics as a plain-text table."""
    width = max([len(n) for n in result.per_class] + [10])
    lines = [f"{'class':<{width}}  AP"]
    for name, ap in result.per_class.items():
        lines.append(f"{name:<{width}}  {'  n/a' if math.isnan(ap) else f'{ap:.4f}'}")
    lines.append("-" * (width + 8))
    for name, value in result.metrics.items():
        lines.append(f"{name:<{width}}  {value:.4f}")
    lines.append(f"{result.num_images} images, {result.images_per_s:.1f} images/s (forward)")
    return "\n".join(lines)


def write_report(result: EvalResult, dataset, class_names: Sequence[str], out_dir: str,
                 score_thresh: float = 0.5, made_by: Optional[dict] = None) -> None:
    """eval.json (with `made_by`, provenance's record of the model and machine, if given),
    pr_curves.png, confusion_matrix.png and detections.png (the first sampled val images) in
    out_dir."""
    make_folder(out_dir)
    record = result.to_json()
    if made_by is not None:
        record["provenance"] = made_by
    write_json(os.path.join(out_dir, "eval.json"), record)
    plot_pr_curves(os.path.join(out_dir, "pr_curves.png"), result.curves,
                   title=f"{result.metric} {result.value:.3f}")
    if result.confusion is not None:
        plot_confusion_matrix(os.path.join(out_dir, "confusion_matrix.png"),
                              result.confusion.counts, class_names,
                              result.confusion.score_thresh)
    if result.samples:
        save_image(os.path.join(out_dir, "detections.png"),
                   detections_picture(result, dataset, class_names, score_thresh))


def detections_picture(result: EvalResult, dataset, class_names: Sequence[str],
                       score_thresh: float = 0.5) -> np.ndarray:
    """The sampled val images with ground truth and predictions drawn, one RGB grid."""
    images = [read_image(dataset.image_path(d.index)).asnumpy() for d in result.samples]
    return detections_grid(images, [(d.gt[:, :4], d.gt[:, 4].astype(int))
                                    for d in result.samples],
                           [(d.boxes, d.labels, d.scores) for d in result.samples],
                           class_names, score_thresh=score_thresh)


def evaluate_checkpoint(cfg, params_path: Optional[str], out_dir: str, progress: bool = True,
                        deploy_dir: Optional[str] = None, onnx_path: Optional[str] = None,
                        accelerator_dir: Optional[str] = None, int8: bool = False,
                        device: Optional[str] = None, runtime: str = "onnxruntime"
                        ) -> EvalResult:
    """Evaluate a training .params file, or what export_ssd.py made of it (the deploy graph in
    `deploy_dir`, the ONNX model `onnx_path`, or the accelerator graph + host part in
    `accelerator_dir`, INT8 with `int8`; ONNX files run on the CPU), on the
    configured val set and write the report. `device`: where a checkpoint or deploy graph
    runs ('cpu', 'gpu0', ...; default: the config's train.ctx if this machine has it);
    `runtime`: what runs an ONNX file (runtimes.RUNTIMES)."""
    dataset, config_classes = val_set(cfg)
    predictor, classes, ctx = load_predictor(cfg, params_path, deploy_dir, onnx_path,
                                             accelerator_dir, int8, classes=config_classes,
                                             device=device, runtime=runtime)
    result = evaluate(predictor, dataset, classes, ctx, Preprocess.from_config(cfg),
                      EvalSettings.from_config(cfg), out_dir=out_dir, progress=progress)
    source = model_source(params_path, deploy_dir, onnx_path, accelerator_dir, int8, runtime)
    write_report(result, dataset, classes, out_dir, cfg.eval.score_thresh,
                 provenance(source, ctx))
    return result
