"""VOC-format detection data: VOCdevkit years or any Annotations/JPEGImages folder, on
GluonCV's VOCDetection with every problem a DataError naming the file.

Labels are float arrays of rows `[xmin, ymin, xmax, ymax, class, difficult]` in pixels of the
original image (0-based, as GluonCV's VOCDetection gives them).
"""
from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
from gluoncv.data import VOCDetection

from ssd_nobias.data.boxes import clip_box
from ssd_nobias.data.images import (IMAGE_EXTS, MAX_PIXELS, ImageError, read_image,
                                    size_mismatch)
from ssd_nobias.errors import DataError

log = logging.getLogger(__name__)


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
    """base/JPEGImages/<image_id> with the first IMAGE_EXTS that exists, or None."""
    stem = os.path.join(base, "JPEGImages", image_id)
    return next((stem + ext for ext in IMAGE_EXTS if os.path.isfile(stem + ext)), None)


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


class VOCFormatDetection(VOCDetection):
    """VOC-format detection data (VOCdevkit years or any Annotations/JPEGImages folder).

    splits: (subfolder, set name) pairs; subfolder is a year (VOC<year>), a folder name under
    root, or '' for root itself. Every problem is a DataError naming the file: a missing split
    file or image, malformed XML, a box with xmin >= xmax. Boxes crossing the border are clipped.
    Object classes not in `classes` are skipped, with one warning naming them. Images with no
    object are dropped when `skip_empty` (training), with a count logged, and kept otherwise.
    """

    def __init__(self, root: str, splits: Sequence[Tuple], classes: Sequence[str],
                 transform=None, skip_empty: bool = False, max_pixels: int = MAX_PIXELS):
        self._classes = tuple(classes)
        self._max_pixels = max_pixels
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
            h, w = read_image(self._paths[idx], self._max_pixels).shape[:2]
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
        img = read_image(self._paths[idx], self._max_pixels)
        problem = size_mismatch(img, self._sizes[idx], f"{self.annotation_path(idx)}: <size>",
                                self._paths[idx])
        if problem:
            raise ImageError(problem)
        label = self._label_cache[idx].copy()
        return self._transform(img, label) if self._transform is not None else (img, label)
