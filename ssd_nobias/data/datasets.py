"""Datasets (VOC, COCO, VOC-format custom) on GluonCV's, with strict checks, and SSD loaders.

Labels are float arrays of rows `[xmin, ymin, xmax, ymax, class, difficult]` in pixels of the
original image (0-based, as GluonCV's VOCDetection gives them); COCO rows have no difficult
column. Training loaders run GluonCV's SSD augmentation (its hue jitter corrected) and anchor
matching in the workers.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from gluoncv.data import COCODetection, VOCDetection
from gluoncv.data.batchify import Stack, Tuple as BTuple
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import experimental
from gluoncv.data.transforms import image as timage
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
from gluoncv.utils.bbox import bbox_iou
from mxnet import gluon
from yacs.config import CfgNode

from ssd_nobias.data.boxes import clip_box
from ssd_nobias.data.yolo import YOLODetection, yolo_classes
from ssd_nobias.errors import DataError, require
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.images import ImageError, read_image

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
BAD_IMAGE_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class VOCObject:
    """One <object> of a VOC XML as written: 0-based box, unclipped and unchecked."""

    name: str  # lower-cased, stripped
    box: Tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
    difficult: bool


def read_split(base: str, name: str) -> List[str]:
    """The image ids base/ImageSets/Main/<name>.txt lists (first word of each non-blank line)."""
    split_file = os.path.join(base, "ImageSets", "Main", f"{name}.txt")
    if not os.path.isfile(split_file):
        raise DataError(f"split file '{split_file}' does not exist")
    with open(split_file) as f:
        return [line.split()[0] for line in f if line.strip()]


def find_image(base: str, image_id: str) -> Optional[str]:
    """base/JPEGImages/<image_id> with the first IMAGE_EXTENSIONS that exists, or None."""
    stem = os.path.join(base, "JPEGImages", image_id)
    return next((stem + ext for ext in IMAGE_EXTENSIONS if os.path.isfile(stem + ext)), None)


def parse_voc_xml(path: str) -> Tuple[Optional[Tuple[float, float]], List[VOCObject]]:
    """((width, height) from <size>, or None if absent) and the objects of a VOC annotation.

    A missing file, malformed XML or an object without a numeric bndbox is a DataError naming
    the file (and the object).
    """
    if not os.path.isfile(path):
        raise DataError(f"annotation '{path}' does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DataError(f"{path}: malformed XML ({err})") from None
    try:
        size = (float(root.findtext("size/width")), float(root.findtext("size/height")))
    except (TypeError, ValueError):
        size = None
    objects = []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip().lower()
        box = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(t)) - 1
                                      for t in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise DataError(f"{path}: object {k} ('{name}') has no valid bndbox") from None
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append(VOCObject(name, (xmin, ymin, xmax, ymax), difficult))
    return size, objects


def size_mismatch(image, size: Tuple[float, float], source: str, image_path: str) -> str:
    """A message naming both files and sizes if the decoded image is not `size` (as annotated
    in `source`: "<file>: <size>" or "<file>: image <id>"), else ''."""
    h, w = image.shape[:2]
    if (float(w), float(h)) == tuple(size):
        return ""
    return (f"{source} says {size[0]:g}x{size[1]:g} (width x height) but {image_path} is "
            f"{w}x{h}; its boxes would be clipped and scaled to the wrong size")


class VOCFormatDetection(VOCDetection):
    """VOC-format detection data (VOCdevkit years or any Annotations/JPEGImages folder).

    splits: (subfolder, set name) pairs; subfolder is a year (VOC<year>), a folder name under
    root, or '' for root itself. Every problem is a DataError naming the file: a missing split
    file or image, malformed XML, a box with xmin >= xmax. Boxes crossing the border are clipped.
    Object classes not in `classes` are skipped, with one warning naming them. Images with no
    object are dropped when `skip_empty` (training), with a count logged, and kept otherwise.
    """

    def __init__(self, root: str, splits: Sequence[Tuple], classes: Sequence[str],
                 transform=None, skip_empty: bool = False):
        self._classes = tuple(classes)
        self._skip_empty = skip_empty
        root = os.path.expanduser(root)
        if not os.path.isdir(root):
            raise DataError(f"dataset root '{root}' does not exist")
        self._unknown = {}
        super().__init__(root=root, splits=[tuple(s) for s in splits], transform=transform,
                         preload_label=True)
        if self._unknown:
            names = ", ".join(f"{k} ({v})" for k, v in sorted(self._unknown.items()))
            log.warning("%s: skipped objects of classes not in the class list: %s", self, names)
        if skip_empty:
            keep = [i for i, label in enumerate(self._label_cache) if len(label)]
            if len(keep) < len(self._items):
                log.warning("%s: skipped %d of %d images that have no object", self,
                            len(self._items) - len(keep), len(self._items))
                self._items = [self._items[i] for i in keep]
                self._label_cache = [self._label_cache[i] for i in keep]
                self._paths = [self._paths[i] for i in keep]
                self._sizes = [self._sizes[i] for i in keep]
        if not self._items:
            raise DataError(f"{self}: no images in {root} for splits {list(splits)}")

    @property
    def classes(self):
        return self._classes

    def _load_items(self, splits):
        ids = []
        for subfolder, name in splits:
            folder = f"VOC{subfolder}" if isinstance(subfolder, int) else str(subfolder)
            base = os.path.join(self._root, folder)
            ids += [(base, image_id) for image_id in read_split(base, name)]
        self._paths = [self._image_file(base, image_id) for base, image_id in ids]
        return ids

    @staticmethod
    def _image_file(base: str, image_id: str) -> str:
        path = find_image(base, image_id)
        if path is None:
            raise DataError(f"image '{image_id}' is listed but "
                            f"{os.path.join(base, 'JPEGImages', image_id)}.jpg (or .png) does "
                            f"not exist")
        return path

    def _preload_labels(self):
        parsed = [self._parse(i) for i in range(len(self._items))]
        self._sizes = [size for _, size in parsed]
        return [label for label, _ in parsed]

    def _load_label(self, idx):
        return self._parse(idx)[0]

    def _parse(self, idx: int) -> Tuple[np.ndarray, Tuple[float, float]]:
        """(label rows, (width, height)) of image idx from its XML."""
        path = self.annotation_path(idx)
        size, objects = parse_voc_xml(path)
        if size is None:  # no <size>: ask the image itself
            h, w = read_image(self._paths[idx]).shape[:2]
            size = (float(w), float(h))
        width, height = size
        rows = []
        for k, obj in enumerate(objects):
            if obj.name not in self._classes:
                self._unknown[obj.name] = self._unknown.get(obj.name, 0) + 1
                continue
            xmin, ymin, xmax, ymax = clip_box(obj.box, width, height)
            if xmin >= xmax or ymin >= ymax:
                raise DataError(f"{path}: object {k} ('{obj.name}') has an empty box after "
                                f"clipping to the {width:g}x{height:g} image: xmin={xmin:g} "
                                f"xmax={xmax:g} ymin={ymin:g} ymax={ymax:g}")
            rows.append([xmin, ymin, xmax, ymax, self._classes.index(obj.name),
                         1.0 if obj.difficult else 0.0])
        return np.array(rows, dtype=np.float32).reshape(-1, 6), size

    def annotation_path(self, idx: int) -> str:
        base, image_id = self._items[idx]
        return os.path.join(base, "Annotations", f"{image_id}.xml")

    def image_path(self, idx: int) -> str:
        return self._paths[idx]

    def image_size(self, idx: int) -> Tuple[float, float]:
        """(width, height) of image idx, from its annotation."""
        return self._sizes[idx]

    def __getitem__(self, idx):
        img = read_image(self._paths[idx])
        problem = size_mismatch(img, self._sizes[idx], f"{self.annotation_path(idx)}: <size>",
                                self._paths[idx])
        if problem:
            raise ImageError(problem)
        label = self._label_cache[idx].copy()
        return self._transform(img, label) if self._transform is not None else (img, label)


def coco_image_candidates(root: str, entry: dict, splits: Sequence[str]) -> List[str]:
    """Where a COCO image entry's file may be, in the order looked at. COCO's own files:
    root/<folder of coco_url>/<name>. Files as annotation tools (CVAT, Label Studio, Roboflow)
    write them have a `file_name` only, relative to the root, its images/ folder, or a folder
    named as the split (instances_train: train), alone or under images/."""
    if "coco_url" in entry:
        return [os.path.join(root, *entry["coco_url"].split("/")[-2:])]
    if not entry.get("file_name"):
        return []
    names = sorted({s.replace("instances_", "", 1) for s in splits})
    folders = ["", "images"] + [f for s in names for f in (s, os.path.join("images", s))]
    return [os.path.join(root, f, entry["file_name"]) for f in folders]


class COCOFormatDetection(COCODetection):
    """COCO-format detection data whose classes come from the annotation file's categories."""

    def __init__(self, root: str, splits: Sequence[str], transform=None,
                 skip_empty: bool = False):
        root = os.path.expanduser(root)
        splits = list(splits)
        first = os.path.join(root, "annotations", f"{splits[0]}.json")
        for split in splits:
            path = os.path.join(root, "annotations", f"{split}.json")
            if not os.path.isfile(path):
                raise DataError(f"annotation file '{path}' does not exist")
        require("pycocotools", extra="coco", what="COCO-format data")
        from pycocotools.coco import COCO

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints timings
            coco = COCO(first)
        self._classes = [c["name"] for c in coco.loadCats(coco.getCatIds())]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                super().__init__(root=root, splits=splits, transform=transform,
                                 skip_empty=skip_empty)
        except IOError as err:
            raise DataError(f"{root}: {err}") from None
        if not self._items:
            raise DataError(f"{self}: no images with objects in {root}")

    @property
    def classes(self):
        return self._classes

    def _parse_image_path(self, entry):
        candidates = coco_image_candidates(self._root, entry, self._splits)
        if not candidates:
            raise DataError(f"{self._root}: image {entry.get('id')} has neither coco_url nor "
                            f"file_name")
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            raise DataError(f"image {entry.get('id')} ('{entry.get('file_name')}') is in none "
                            f"of {', '.join(candidates)}")
        return found

    def image_path(self, idx: int) -> str:
        return self._items[idx]

    def image_size(self, idx: int) -> Tuple[float, float]:
        """(width, height) of image idx, from its annotation file."""
        return self._sizes[idx]

    def image_id(self, idx: int) -> int:
        return self._image_ids[idx]

    def _json_of(self, idx: int) -> str:
        return os.path.join(self._root, "annotations", f"{self._json_split[idx]}.json")

    def _load_jsons(self):
        items, labels, ratios = super()._load_jsons()
        by_path = {}
        for split, coco in zip(self._splits, self._coco):
            for entry in coco.loadImgs(coco.getImgIds()):
                by_path[self._parse_image_path(entry)] = (
                    entry["id"], split, (float(entry["width"]), float(entry["height"])))
        self._image_ids, self._json_split, self._sizes = (
            [by_path[p][k] for p in items] for k in range(3))
        labels = [np.array([r for r in rows if r[4] >= 0], dtype=np.float32).reshape(-1, 5)
                  for rows in labels]
        return items, labels, ratios

    def __getitem__(self, idx):
        img = read_image(self._items[idx])
        problem = size_mismatch(img, self.image_size(idx), f"{self._json_of(idx)}: image "
                                f"{self.image_id(idx)}", self._items[idx])
        if problem:
            raise ImageError(problem)
        label = self._labels[idx].copy()
        return self._transform(img, label) if self._transform is not None else (img, label)


def build_dataset(cfg: CfgNode, split: str, transform=None):
    """The configured dataset for split 'train' (objectless images dropped) or 'val'."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    d = cfg.data
    splits = d.train_splits if split == "train" else d.val_splits
    if not os.path.isdir(os.path.expanduser(d.root)):
        raise DataError(f"dataset root '{d.root}' (data.root) does not exist")
    try:
        return _dataset(d, split, splits, transform)
    except DataError as err:
        raise DataError(f"{err} [data.dataset={d.dataset}, data.root={d.root}, "
                        f"data.{split}_splits={list(splits)}]") from None


def _dataset(d: CfgNode, split: str, splits: Sequence, transform):
    skip_empty = split == "train"
    if d.dataset == "coco":
        return COCOFormatDetection(d.root, [str(s) for s in splits], transform, skip_empty)
    if d.dataset == "yolo":
        return YOLODetection(d.root, [str(s) for s in splits], transform, skip_empty)
    if d.dataset == "voc":
        pairs = [tuple(s) for s in splits]
        if any(len(p) != 2 for p in pairs):
            raise DataError(f"data.{split}_splits must be [year, name] pairs for voc, "
                            f"got {list(splits)}")
        classes = VOCDetection.CLASSES
    else:
        pairs = [("", str(s)) for s in splits]
        classes = _class_names(d)
    return VOCFormatDetection(d.root, pairs, classes, transform, skip_empty)


def val_set(cfg: CfgNode) -> Tuple[gluon.data.Dataset, List[str]]:
    """The configured val dataset and the class names."""
    dataset = build_dataset(cfg, "val")
    return dataset, list(dataset.classes) if cfg.data.dataset in ("coco", "yolo") else \
        dataset_classes(cfg)


def dataset_classes(cfg: CfgNode) -> List[str]:
    """Class names for the configured dataset (voc_custom: the list, or a classes.txt; yolo:
    its data.yaml or classes.txt)."""
    d = cfg.data
    if d.dataset == "voc":
        return list(VOCDetection.CLASSES)
    if d.dataset == "coco":
        return list(build_dataset(cfg, "val").classes)
    if d.dataset == "yolo":
        return yolo_classes(d.root)
    return _class_names(d)


def _class_names(d: CfgNode) -> List[str]:
    names = list(d.classes)
    if len(names) == 1 and names[0].endswith(".txt"):
        path = os.path.expanduser(names[0])
        if not os.path.isabs(path):
            path = os.path.join(os.path.expanduser(d.root), path)
        if not os.path.isfile(path):
            raise DataError(f"class list '{path}' (data.classes) does not exist")
        with open(path) as f:
            names = [line.strip() for line in f if line.strip()]
    names = [n.strip().lower() for n in names]
    if not names:
        raise DataError("data.classes is empty")
    return names


# GluonCV's random_color_distort rotates hue by `hue_delta * pi` radians, so its default of 18
# (meant as the SSD recipe's +-18 degrees) gives any hue at all, to half of the training images.
# In its units, +-18 degrees is 0.1.
HUE_DELTA = 18 / 180


# The SSD paper's patch sampler: the whole image, or a crop whose IoU with every object is at
# least each of these minimums (or, last, at most 1), one of the candidates picked at random.
CROP_CONSTRAINTS = ((0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None), (None, 1.0))


def random_crop_with_constraints(bbox: np.ndarray, size: Tuple[int, int],
                                 min_scale: float = 0.3, max_scale: float = 1.0,
                                 max_aspect_ratio: float = 2.0, max_trial: int = 50
                                 ) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """GluonCV's `experimental.bbox.random_crop_with_constraints`, its trials drawn at once.

    Same rules and arguments; GluonCV tests up to 50 crops per constraint one at a time in
    Python, which is half of the loader's time per image on a CPU. Returns the boxes clipped
    to the crop (those whose centre falls outside it dropped) and the crop (x, y, w, h).
    """
    w, h = size
    candidates = [(0, 0, w, h)]
    if len(bbox):
        for min_iou, max_iou in CROP_CONSTRAINTS:
            scale = np.random.uniform(min_scale, max_scale, max_trial)
            aspect = np.random.uniform(np.maximum(1 / max_aspect_ratio, scale ** 2),
                                       np.minimum(max_aspect_ratio, 1 / scale ** 2))
            crop_h = np.minimum((h * scale / np.sqrt(aspect)).astype(int), h)
            crop_w = np.minimum((w * scale * np.sqrt(aspect)).astype(int), w)
            top = (np.random.uniform(0, 1, max_trial) * (h - crop_h)).astype(int)
            left = (np.random.uniform(0, 1, max_trial) * (w - crop_w)).astype(int)
            crops = np.stack([left, top, left + crop_w, top + crop_h], axis=1)
            iou = bbox_iou(bbox[:, :4], crops)
            ok = ((iou.min(axis=0) >= (min_iou if min_iou is not None else -np.inf)) &
                  (iou.max(axis=0) <= (max_iou if max_iou is not None else np.inf)))
            if ok.any():
                k = int(np.argmax(ok))
                candidates.append((int(left[k]), int(top[k]), int(crop_w[k]), int(crop_h[k])))
    while candidates:
        crop = candidates.pop(np.random.randint(0, len(candidates)))
        cropped = tbbox.crop(bbox, crop, allow_outside_center=False)
        if cropped.size:
            return cropped, crop
    return bbox, (0, 0, w, h)


def per_image_normalize(x: mx.nd.NDArray) -> mx.nd.NDArray:
    """A normalized (3, H, W) image divided by its own RMS: a scalar, no additive term, so an
    image whose contrast around the mean is scaled by a gives the same tensor."""
    rms = mx.nd.sqrt(mx.nd.mean(mx.nd.square(x)))
    return x / mx.nd.maximum(rms, 1e-6)


class SSDTrainTransform(SSDDefaultTrainTransform):
    """GluonCV's SSD training augmentation, step for step, with the hue jitter it intends and
    a vectorized crop sampler.

    Colour distortion, random expansion (p 0.5), IoU-constrained random crop, resize with a
    random interpolation, horizontal flip, normalization, then the anchors' training targets.
    """

    def __init__(self, width: int, height: int, anchors=None, max_expand: float = 4.0,
                 per_image: bool = False, **kwargs):
        super().__init__(width, height, anchors, **kwargs)
        self._max_expand = max_expand
        self._per_image = per_image

    def __call__(self, src, label):
        img = experimental.image.random_color_distort(src, hue_delta=HUE_DELTA)
        if self._max_expand > 1 and np.random.uniform(0, 1) > 0.5:
            img, expand = timage.random_expand(img, max_ratio=self._max_expand,
                                               fill=[m * 255 for m in self._mean])
            bbox = tbbox.translate(label, x_offset=expand[0], y_offset=expand[1])
        else:
            bbox = label
        h, w, _ = img.shape
        bbox, (x0, y0, w, h) = random_crop_with_constraints(bbox, (w, h))
        img = mx.image.fixed_crop(img, x0, y0, w, h)
        img = timage.imresize(img, self._width, self._height, interp=np.random.randint(0, 5))
        bbox = tbbox.resize(bbox, (w, h), (self._width, self._height))
        img, flips = timage.random_flip(img, px=0.5)
        bbox = tbbox.flip(bbox, (self._width, self._height), flip_x=flips[0])
        img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=self._mean, std=self._std)
        if self._per_image:
            img = per_image_normalize(img)
        if self._anchors is None:
            return img, bbox.astype(img.dtype)
        cls_targets, box_targets, _ = self._target_generator(
            self._anchors, None, mx.nd.array(bbox[np.newaxis, :, :4]),
            mx.nd.array(bbox[np.newaxis, :, 4:5]))
        return img, cls_targets[0], box_targets[0]


class ValTransform:
    """Resize to the network input and normalize as `preprocess` says; keep the label in
    original pixels."""

    def __init__(self, preprocess: Preprocess):
        self._size = (preprocess.size, preprocess.size)
        self._mean, self._std = tuple(preprocess.mean), tuple(preprocess.std)
        self._per_image = preprocess.per_image

    def __call__(self, src, label):
        h, w = src.shape[:2]
        img = timage.imresize(src, *self._size, interp=9)
        img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=self._mean, std=self._std)
        if self._per_image:
            img = per_image_normalize(img)
        return img, label.astype(np.float32), np.array([w, h], dtype=np.float32)


def boxes_to_image(boxes: np.ndarray, width: float, height: float, size: int) -> np.ndarray:
    """Boxes predicted on ValTransform's size x size input, in the original image's pixels
    (clipped to it): the inverse of its resize."""
    scale = np.array([width, height, width, height], dtype=np.float32) / size
    return np.clip(boxes * scale, 0, np.array([width, height, width, height], np.float32))


class EpochSampler(gluon.data.Sampler):
    """A shuffled epoch of (sample seed, index) pairs, fixed by (seed, epoch), resumable mid-way.

    The per-sample seed makes augmentation independent of worker count and scheduling. With
    `num_shards` > 1 (distributed training), shard `shard` gets every num_shards-th sample of
    the epoch's order, all shards the same length: batch k of each shard together make batch k
    of one process with num_shards times the batch.
    """

    def __init__(self, length: int, seed: int, shard: int = 0, num_shards: int = 1):
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} of {num_shards}")
        self._length, self._seed = length, seed
        self._shard, self._num_shards = shard, num_shards
        self._epoch, self._skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Draw epoch `epoch`'s order; leave out the shard's first `skip` samples (trained on)."""
        self._epoch, self._skip = epoch, skip

    def __iter__(self):
        rng = np.random.RandomState([self._seed, self._epoch])
        order = rng.permutation(self._length)
        seeds = rng.randint(0, 2 ** 31 - 1, size=self._length)
        pairs = list(zip(seeds.tolist(), order.tolist()))[self._shard::self._num_shards]
        return iter(pairs[:self.shard_length][self._skip:])

    @property
    def shard_length(self) -> int:
        return self._length // self._num_shards

    def __len__(self) -> int:
        return self.shard_length - self._skip


class SeededTransform(gluon.data.Dataset):
    """dataset[(seed, i)] -> transform(*dataset[i]) with Python's and NumPy's RNGs seeded.

    bad_images='skip': an image that cannot be read whole or disagrees with its annotation's
    size is replaced by the next good one, with a warning that names it and counts the skips of
    this loader process; 'error' (the default) raises the ImageError that names it.
    """

    def __init__(self, dataset, transform, bad_images: str = "error"):
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, not {bad_images!r}")
        self._dataset, self._transform = dataset, transform
        self._skip = bad_images == "skip"
        self.skipped = set()

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, key):
        seed, idx = key
        random.seed(seed)
        np.random.seed(seed)  # GluonCV's SSD augmentation draws from both
        return self._transform(*self._load(idx))

    def _load(self, idx: int):
        for k in range(len(self._dataset)):
            i = (idx + k) % len(self._dataset)
            if i in self.skipped:
                continue
            try:
                return self._dataset[i]
            except ImageError as err:
                if not self._skip:
                    raise
                self.skipped.add(i)
                log.warning("skipped a bad image (data.bad_images: skip), %d so far in this "
                            "loader process: %s", len(self.skipped), err)
        raise DataError(f"{self._dataset}: every image is bad ({len(self.skipped)} skipped)")


def train_loader(dataset, anchors: mx.nd.NDArray, preprocess: Preprocess, batch_size: int,
                 num_workers: int, sampler: EpochSampler, max_expand: float = 4.0,
                 bad_images: str = "error") -> gluon.data.DataLoader:
    """Batches of (image, class targets, box targets) in the sampler's order, last partial dropped.

    Augmentation (SSDTrainTransform) and anchor matching run in the workers; bad images raise
    or are skipped as SeededTransform says.
    """
    if len(dataset) < batch_size:
        raise DataError(f"{dataset} has {len(dataset)} training images, fewer than one batch "
                        f"of {batch_size}")
    size = preprocess.size
    transform = SSDTrainTransform(size, size, anchors.as_in_context(mx.cpu()), max_expand,
                                  preprocess.per_image, mean=tuple(preprocess.mean),
                                  std=tuple(preprocess.std))
    batches = gluon.data.BatchSampler(sampler, batch_size, last_batch="discard")
    return gluon.data.DataLoader(SeededTransform(dataset, transform, bad_images),
                                 batch_sampler=batches,
                                 batchify_fn=BTuple(Stack(), Stack(), Stack()),
                                 num_workers=num_workers)


def pad_labels(labels: Sequence[np.ndarray]) -> mx.nd.NDArray:
    """Stack label arrays into (batch, max(1, most rows), columns), padding with -1."""
    rows = max([1] + [len(x) for x in labels])
    out = np.full((len(labels), rows, labels[0].shape[-1]), -1, dtype=np.float32)
    for i, x in enumerate(labels):
        out[i, :len(x)] = x
    return mx.nd.array(out, dtype=np.float32)


def val_loader(dataset, preprocess: Preprocess, batch_size: int, num_workers: int,
               transform=None) -> gluon.data.DataLoader:
    """Every image exactly once, in order: (images, padded labels, original (w, h)), made by
    ValTransform or by `transform` (the same outputs)."""
    transform = transform or ValTransform(preprocess)
    return gluon.data.DataLoader(dataset.transform(transform),
                                 batch_size, shuffle=False,
                                 batchify_fn=BTuple(Stack(), pad_labels, Stack()),
                                 last_batch="keep", num_workers=num_workers)


def split_batch(batch: Sequence[mx.nd.NDArray], ctx: Sequence[mx.Context]
                ) -> List[List[mx.nd.NDArray]]:
    """split_and_load each array over as many contexts as the batch has samples."""
    ctx = list(ctx)[: batch[0].shape[0]]
    return [gluon.utils.split_and_load(x, ctx, batch_axis=0, even_split=False) for x in batch]
