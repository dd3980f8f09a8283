"""Detection on one's own pictures and videos: any model file predictors.py loads, inputs as
files, folders, globs or a video; annotated copies and one JSON of detections per input, boxes
in the original image's pixels."""
from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import mxnet as mx
import numpy as np

from ssd_nobias.atomic import make_folder, remove_stale_temps, replacing, write_json
from ssd_nobias.data.transforms import ValTransform, boxes_to_image
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.errors import DataError, StorageError, UserError
from ssd_nobias.data.images import IMAGE_EXTS, MAX_PIXELS, ImageError, read_image
from ssd_nobias.plots import draw_boxes
from ssd_nobias.progress import progress_bar, tracked
from ssd_nobias.provenance import model_source, provenance
from ssd_nobias.runtime.accelerator import FLOAT_ONNX, is_int8_graph
from ssd_nobias.runtime.predictors import checkpoint_config, load_predictor

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def find_inputs(specs: Sequence[str]) -> List[str]:
    """Image and video files named by `specs`: files, folders (their images and videos,
    sorted) or glob patterns; a spec that names nothing is an error naming it."""
    found = []
    for spec in specs:
        if os.path.isdir(spec):
            names = sorted(n for n in os.listdir(spec)
                           if n.lower().endswith(IMAGE_EXTS + VIDEO_EXTS))
            if not names:
                raise DataError(f"input folder '{spec}' holds no image ({', '.join(IMAGE_EXTS)}) "
                                f"or video ({', '.join(VIDEO_EXTS)})")
            found += [os.path.join(spec, n) for n in names]
        elif os.path.isfile(spec):
            found.append(spec)
        elif glob.has_magic(spec) and glob.glob(spec):
            found += sorted(p for p in glob.glob(spec) if os.path.isfile(p))
        else:
            raise DataError(f"input '{spec}' is no file, folder or matching pattern")
    return found


def is_video(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTS)


class Result(list):
    """One image's detections, best first: a list of {"class", "class_id", "score", "box"}
    dicts (what detect writes as JSON) with the same as arrays and a drawing of them."""

    def __init__(self, detections: List[Dict], image: np.ndarray, classes: Sequence[str]):
        super().__init__(detections)
        self.image, self.classes = image, list(classes)

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) x0, y0, x1, y1 in the image's pixels."""
        return np.array([d["box"] for d in self], np.float32).reshape(-1, 4)

    @property
    def scores(self) -> np.ndarray:
        return np.array([d["score"] for d in self], np.float32)

    @property
    def class_ids(self) -> np.ndarray:
        return np.array([d["class_id"] for d in self], np.int64)

    @property
    def labels(self) -> List[str]:
        return [d["class"] for d in self]

    def draw(self) -> np.ndarray:
        """The image (RGB) with the detections drawn: box, class and score."""
        if not self:
            return self.image.copy()
        return draw_boxes(self.image, self.boxes, self.class_ids, self.classes, self.scores)


CHANNELS = ("RGB", "BGR")


class Detector:
    """A loaded model with its preprocessing: images in (files, PIL images or arrays, one or a
    list), detections in each image's pixels out.

    `Detector(path)` opens what training or export wrote: a .params checkpoint, an export
    folder, an accelerator folder or an .onnx file (from_checkpoint / from_export say more).
    `source`: where the model came from (provenance.model_source; set when opened from a path),
    recorded in what detect writes."""

    def __init__(self, model, prep: Optional[Preprocess] = None, thresh: float = 0.5,
                 keep_classes: Optional[Sequence[str]] = None, source: Optional[dict] = None,
                 **options):
        if isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            opened = Detector.from_checkpoint(path, thresh, keep_classes, **options) \
                if path.endswith(".params") else \
                Detector.from_export(path, thresh=thresh, keep_classes=keep_classes, **options)
            model, prep, source = opened.model, opened.prep, opened.source
        elif prep is None or options:
            raise TypeError("Detector(model, prep, ...) takes a loaded model with its "
                            "preprocessing; give a path to open one")
        self.model, self.prep, self.thresh = model, prep, thresh
        self.source = source
        self.transform = ValTransform(prep)
        names = list(model.classes)
        unknown = sorted(set(keep_classes or ()) - set(names))
        if unknown:
            raise DataError(f"--classes {', '.join(unknown)}: not a class of this model "
                            f"({', '.join(names)})")
        self.keep = None if not keep_classes else {names.index(c) for c in keep_classes}

    @classmethod
    def from_checkpoint(cls, params: str, thresh: float = 0.5,
                        keep_classes: Optional[Sequence[str]] = None,
                        device: Optional[str] = None, cfg=None) -> "Detector":
        """A training checkpoint, its config and class names read from the .json beside it
        (or `cfg`); `device`: 'cpu', 'gpu0', ... (default: where it trained, if here)."""
        cfg = cfg if cfg is not None else checkpoint_config(params)
        model = load_predictor(cfg, params_path=params, device=device)
        return cls(model, Preprocess.from_config(cfg), thresh, keep_classes,
                   source=model_source(params=params))

    @classmethod
    def from_export(cls, path: str, int8: bool = False, thresh: float = 0.5,
                    keep_classes: Optional[Sequence[str]] = None,
                    device: Optional[str] = None, runtime: str = "onnxruntime") -> "Detector":
        """What export wrote, needing nothing else: its folder (the deploy graph, on `device`,
        default the CPU), the whole-model .onnx in it, its accelerator/ folder (`int8`: the
        INT8 graph) or one graph of that folder (accelerator.int8-signed.onnx, say); ONNX runs
        on the CPU in `runtime`: ONNX Runtime, OpenVINO or (an INT8 accelerator graph) the
        integer-only reference."""
        graph = path.endswith(".onnx")
        folder = os.path.dirname(os.path.abspath(path)) if graph else path
        accelerator = os.path.isfile(os.path.join(folder, FLOAT_ONNX))
        if int8 and not accelerator:
            raise DataError(f"{path}: int8 needs an accelerator folder (export --formats int8 "
                            f"writes <export>/accelerator/)")
        if accelerator:  # the folder, or one of its graphs (the signed INT8, say)
            model = load_predictor(accelerator_dir=path, int8=int8, runtime=runtime)
            source = model_source(accelerator=path, int8=is_int8_graph(path, int8),
                                  runtime=runtime)
        elif graph:
            model = load_predictor(onnx_path=path, runtime=runtime)
            source = model_source(onnx=path, runtime=runtime)
        else:
            model = load_predictor(deploy_dir=path, device=device)
            source = model_source(deploy=path)
        return cls(model, Preprocess.load(folder), thresh, keep_classes, source=source)

    def __call__(self, images, channels: str = "RGB"):
        """Detections of one image, or a list of them for a list (run as one batch).

        Args:
            images: an image file's path, a PIL image, an HxWx3 uint8 array, or a list of
                those.
            channels: the channel order of arrays: "RGB" (PIL, imageio, this package's
                readers) or "BGR" (cv2.imread). Files and PIL images are read as RGB.
        Returns:
            a Result (a list of {"class", "class_id", "score", "box": [x0, y0, x1, y1] in the
            image's pixels} dicts, best first, with .boxes, .scores, .labels and .draw()), or
            a list of them.
        """
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {', '.join(CHANNELS)}, not {channels!r}")
        if isinstance(images, (list, tuple)):
            return self._batch([_rgb(i, channels) for i in images])
        return self._batch([_rgb(images, channels)])[0]

    def _batch(self, images: List[np.ndarray]) -> List[Result]:
        if not images:
            return []
        x = mx.nd.stack(*[self.transform(mx.nd.array(i, dtype=np.uint8), np.zeros((0, 5)))[0]
                          for i in images])
        ids, scores, boxes = self.model.predictor(x.as_in_context(self.model.ctx[0]))
        ids, scores, boxes = (a.asnumpy() if hasattr(a, "asnumpy") else np.asarray(a)
                              for a in (ids, scores, boxes))
        return [self._result(image, ids[n, :, 0], scores[n, :, 0], boxes[n])
                for n, image in enumerate(images)]

    def _result(self, image: np.ndarray, ids: np.ndarray, scores: np.ndarray,
                boxes: np.ndarray) -> Result:
        h, w = image.shape[:2]
        boxes = boxes_to_image(boxes, w, h, self.prep.size)
        out = []
        for k in np.argsort(-scores, kind="stable"):
            cid = int(ids[k])
            if cid < 0 or scores[k] < self.thresh or (self.keep is not None and
                                                        cid not in self.keep):
                continue
            out.append({"class": self.model.classes[cid], "class_id": cid,
                        "score": round(float(scores[k]), 6),
                        "box": [round(float(v), 3) for v in boxes[k]]})
        return Result(out, image, self.model.classes)

    def draw(self, image: np.ndarray, detections: List[Dict]) -> np.ndarray:
        """`image` (RGB) with `detections` of it drawn (Result.draw for a Result)."""
        return Result(detections, image, self.model.classes).draw()


def _rgb(image, channels: str) -> np.ndarray:
    """An HxWx3 uint8 RGB array of an image file's path, a PIL image or an array."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(os.fspath(image)).asnumpy()
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image, any mode
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise DataError(f"an image array must be HxWx3 uint8, not {array.shape} {array.dtype}")
    return array[:, :, ::-1] if channels == "BGR" else array


@dataclass
class Summary:
    """What a run did: images (video frames) detected, time in the detector, inputs skipped."""

    images: int = 0
    seconds: float = 0.0  # in the detector, reading and writing excluded
    skipped: List[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


SUMMARY = "detect"  # detect.json; an input named detect.jpg writes detect-2.json


def _out_stem(path: str, taken: set) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    name, k = stem, 1
    while name in taken:  # the same file name in two input folders
        k += 1
        name = f"{stem}-{k}"
    taken.add(name)
    return name


def _video_frames(path: str) -> Tuple[Iterator[np.ndarray], int, float]:
    """RGB frames of a video, their count and the frame rate; an unreadable file is an error."""
    cap = cv2.VideoCapture(path)
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise ImageError(f"{path}: cannot read video (no decodable frame)")
    count, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS) or 25.0

    def frames():
        frame = first
        try:
            while frame is not None:
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                ok, frame = cap.read()
                frame = frame if ok else None
        finally:
            cap.release()
    return frames(), count, fps


def run(detector: Detector, inputs: Sequence[str], out_dir: str, skip_bad: bool = False,
        progress: bool = True, max_pixels: int = MAX_PIXELS) -> Summary:
    """Detect on every input; write <stem>.<ext> (annotated) and <stem>.json under out_dir,
    each whole or not at all, and detect.json: the inputs, what was skipped and what ran them
    (provenance: the model file and its hash, the runtime, the device and CPU). An out_dir that holds an input is refused: its annotated copy
    would replace it."""
    own = os.path.realpath(out_dir)
    held = [p for p in inputs if os.path.dirname(os.path.realpath(p)) == own]
    if held:
        raise UserError(f"--out {out_dir} holds the input {held[0]}, which its annotated copy "
                        f"would replace; write the detections to another folder")
    make_folder(out_dir)
    remove_stale_temps(out_dir)  # what a killed detect left
    summary, taken = Summary(), {SUMMARY}
    bar = progress_bar(len(inputs), "detect", "file", enabled=progress)
    for path in inputs:
        stem = _out_stem(path, taken)
        try:
            if is_video(path):
                _video(detector, path, os.path.join(out_dir, stem), summary)
            else:
                _image(detector, path, os.path.join(out_dir, stem), summary, max_pixels)
        except ImageError:
            if not skip_bad:
                raise
            summary.skipped.append(path)
        bar.update()
    bar.close()
    write_json(os.path.join(out_dir, SUMMARY + ".json"), {
        "inputs": [os.path.abspath(p) for p in inputs], "images": summary.images,
        "images_per_s": round(summary.images_per_s, 2), "skipped": summary.skipped,
        "thresh": detector.thresh, "provenance": provenance(detector.source, getattr(detector.model, "ctx", ()))})
    return summary


def _timed(detector: Detector, image: np.ndarray, summary: Summary) -> List[Dict]:
    start = time.perf_counter()
    detections = detector(image)
    summary.seconds += time.perf_counter() - start
    summary.images += 1
    return detections


def _image(detector: Detector, path: str, stem: str, summary: Summary,
           max_pixels: int) -> None:
    image = read_image(path, max_pixels).asnumpy()
    detections = _timed(detector, image, summary)
    ext = os.path.splitext(path)[1].lower()
    ext = ext if ext in (".jpg", ".jpeg", ".png") else ".png"
    _write_image(stem + ext, cv2.cvtColor(detector.draw(image, detections), cv2.COLOR_RGB2BGR))
    write_json(stem + ".json", {"input": path, "width": image.shape[1],
                                "height": image.shape[0], "detections": detections})


def _write_image(path: str, bgr: np.ndarray) -> None:
    """cv2.imwrite whole or not at all; its silent False (a full disk, a read-only folder)
    becomes a StorageError naming the file."""
    with replacing(path, os.path.splitext(path)[1]) as tmp:
        if not cv2.imwrite(tmp, bgr):
            raise StorageError(f"cannot write {path}: OpenCV could not write the picture (is "
                               f"the disk full or the folder read-only?)")


def _video(detector: Detector, path: str, stem: str, summary: Summary) -> None:
    frames, count, fps = _video_frames(path)
    per_frame: List[Dict] = []
    with replacing(stem + ".mp4", ".mp4") as tmp:
        h, w = _write_video(detector, frames, count, fps, tmp, per_frame, path, summary)
        if not os.path.isfile(tmp):
            raise StorageError(f"cannot write {stem}.mp4: OpenCV wrote no video")
    write_json(stem + ".json", {"input": path, "width": w, "height": h, "fps": fps,
                                "frames": per_frame})


def _write_video(detector: Detector, frames, count: int, fps: float, tmp: str,
                 per_frame: List[Dict], path: str, summary: Summary) -> Tuple[int, int]:
    """Draw every frame's detections into the video `tmp`; (height, width) of the frames."""
    writer, h, w = None, 0, 0
    try:
        for image in tracked(frames, total=count or None, unit="frame",
                              desc=os.path.basename(path)):
            if writer is None:
                h, w = image.shape[:2]
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            detections = _timed(detector, image, summary)
            per_frame.append({"frame": len(per_frame), "detections": detections})
            writer.write(cv2.cvtColor(detector.draw(image, detections), cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return h, w
