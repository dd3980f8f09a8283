"""YOLO txt datasets as Ultralytics, Roboflow, CVAT and Label Studio export them, read directly.

A root holds `data.yaml` (`names` as a list or {id: name}; each split a folder of images, a list
of folders, or a .txt listing images, relative to its `path` or to the yaml's folder) or, without
it, `classes.txt` and `images/<split>/`. Each image's labels are the .txt at the same place under
`labels/` (the last `images` folder of its path renamed), one object per line: `class cx cy w h`
in [0, 1] of the image's width and height, or `class x1 y1 x2 y2 ...` (a segmentation polygon:
its bounding box). An image without a label file is background.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import yaml
from mxnet import gluon
from PIL import Image

from ssd_nobias.data.boxes import clip_box
from ssd_nobias.data.images import (IMAGE_EXTS, MAX_PIXELS, ImageError, header_size,
                                    read_image)
from ssd_nobias.errors import DataError


@dataclass(frozen=True)
class YoloObject:
    """One labelled object: its class id and box in pixels (x0, y0, x1, y1), and where it is."""

    class_id: int
    box: Tuple[float, float, float, float]
    line: int


def _read_yaml(path: str) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as err:
        raise DataError(f"{path}: not a readable YAML file ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: must hold a mapping (names, train, val, ...)")
    return data


def yolo_classes(root: str) -> List[str]:
    """The class names, by id: data.yaml's `names`, else classes.txt, one per line."""
    root = os.path.expanduser(root)
    spec, listing = os.path.join(root, "data.yaml"), os.path.join(root, "classes.txt")
    if os.path.isfile(spec):
        names = _read_yaml(spec).get("names")
        if isinstance(names, dict):
            ids = sorted(int(k) for k in names)
            if ids != list(range(len(ids))):
                raise DataError(f"{spec}: names must be numbered 0..{len(ids) - 1}, got {ids}")
            names = [names[k] if k in names else names[str(k)] for k in ids]
        if not isinstance(names, list) or not names:
            raise DataError(f"{spec}: 'names' must list the class names (a list or {{id: name}})")
        return [str(n) for n in names]
    if os.path.isfile(listing):
        with open(listing) as f:
            names = [line.strip() for line in f if line.strip()]
        if not names:
            raise DataError(f"{listing} is empty")
        return names
    raise DataError(f"{root} has neither data.yaml nor classes.txt: a YOLO dataset names its "
                    f"classes in one of them")


def _images_in(folder: str) -> List[str]:
    return sorted(os.path.join(base, name) for base, _, names in os.walk(folder)
                  for name in names if name.lower().endswith(IMAGE_EXTS))


def _resolve(base: str, entry: str) -> str:
    path = os.path.join(base, os.path.expanduser(entry))
    if not os.path.exists(path) and entry.startswith("../"):  # Roboflow: relative to the root
        path = os.path.join(base, entry[3:])
    return os.path.normpath(path)


def yolo_images(root: str, split: str) -> List[str]:
    """The image files of a split, in a stable order; a split that names nothing is an error."""
    root = os.path.expanduser(root)
    spec = os.path.join(root, "data.yaml")
    if os.path.isfile(spec):
        data = _read_yaml(spec)
        if not data.get(split):
            known = [k for k in ("train", "val", "test") if data.get(k)]
            raise DataError(f"{spec} has no split '{split}' (it has {', '.join(known)})")
        base = _resolve(root, str(data["path"])) if data.get("path") else root
        entries = data[split] if isinstance(data[split], list) else [data[split]]
        found = []
        for entry in entries:
            path = _resolve(base, str(entry))
            if path.endswith(".txt") and os.path.isfile(path):
                with open(path) as f:
                    found += [_resolve(os.path.dirname(path), line.strip()) for line in f
                              if line.strip()]
            elif os.path.isdir(path):
                found += _images_in(path)
            else:
                raise DataError(f"{spec}: {split} entry '{entry}' is no folder or .txt list "
                                f"(looked for {path})")
        return found
    folder = os.path.join(root, "images", split)
    if not os.path.isdir(folder):
        raise DataError(f"{folder} does not exist (without a data.yaml, a YOLO split is a "
                        f"folder under {os.path.join(root, 'images')})")
    return _images_in(folder)


def label_path(image: str) -> str:
    """The label file of an image: its last `images` folder renamed `labels`, suffix .txt."""
    head, sep, tail = image.rpartition(f"{os.sep}images{os.sep}")
    stem = os.path.splitext(tail if sep else image)[0]
    return f"{head}{os.sep}labels{os.sep}{stem}.txt" if sep else stem + ".txt"


def image_size(path: str) -> Tuple[float, float]:
    """(width, height) from the file's header, without decoding it."""
    try:
        with open(path, "rb") as f:
            size = header_size(f)
        if size is None:  # another format: PIL reads its header
            with Image.open(path) as image:
                size = image.size
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: cannot read the image's size ({err})") from None
    return float(size[0]), float(size[1])


def parse_labels(path: str, size: Tuple[float, float]) -> Tuple[List[YoloObject], List[str]]:
    """(objects in pixels, problems as 'line N: ...') of a label file; none if it is missing."""
    if not os.path.isfile(path):
        return [], []
    width, height = size
    objects, problems = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                class_id, values = int(fields[0]), [float(v) for v in fields[1:]]
            except ValueError:
                problems.append(f"line {number}: not numbers: {line.strip()!r}")
                continue
            if len(values) == 4:
                cx, cy, w, h = values
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            elif len(values) >= 6 and len(values) % 2 == 0:
                xs, ys = values[0::2], values[1::2]
                box = (min(xs), min(ys), max(xs), max(ys))
            else:
                problems.append(f"line {number}: {len(fields)} values; a box is 'class cx cy "
                                f"w h', a polygon 'class x1 y1 x2 y2 x3 y3 ...'")
                continue
            # to 1/1000 px: normalized coordinates do not round-trip exactly (-5e-7 at an edge)
            pixels = tuple(round(v * side, 3) for v, side in zip(box, (width, height) * 2))
            objects.append(YoloObject(class_id, pixels, number))
    return objects, problems


class YOLODetection(gluon.data.Dataset):
    """A YOLO txt dataset's splits: (image, label rows [x0, y0, x1, y1, class]) in pixels.

    Boxes crossing the border are clipped; a malformed line, an unknown class id or a box empty
    after clipping is a DataError naming the file and line. Images with no object are dropped
    when `skip_empty` (training) and kept otherwise.
    """

    def __init__(self, root: str, splits: Sequence[str], transform=None,
                 skip_empty: bool = False, max_pixels: int = MAX_PIXELS):
        self._root = os.path.expanduser(root)
        self._max_pixels = max_pixels
        if not os.path.isdir(self._root):
            raise DataError(f"dataset root '{root}' does not exist")
        self._classes = yolo_classes(self._root)
        self._transform = transform
        paths = [p for split in splits for p in yolo_images(self._root, str(split))]
        self._paths, self._sizes, self._labels = [], [], []
        for path in paths:
            size = image_size(path)
            rows = self._rows(label_path(path), size)
            if skip_empty and not len(rows):
                continue
            self._paths.append(path)
            self._sizes.append(size)
            self._labels.append(rows)
        if not self._paths:
            raise DataError(f"no images{' with objects' if skip_empty else ''} in {self._root} "
                            f"for splits {list(splits)}")

    def _rows(self, path: str, size: Tuple[float, float]) -> np.ndarray:
        objects, problems = parse_labels(path, size)
        if problems:
            raise DataError(f"{path}: {problems[0]}")
        width, height = size
        rows = []
        for obj in objects:
            if not 0 <= obj.class_id < len(self._classes):
                raise DataError(f"{path}: line {obj.line}: class {obj.class_id} is not one of "
                                f"the {len(self._classes)} classes (0..{len(self._classes) - 1})")
            x0, y0, x1, y1 = clip_box(obj.box, width, height)
            if x0 >= x1 or y0 >= y1:
                raise DataError(f"{path}: line {obj.line}: the box is empty once clipped to the "
                                f"{width:g}x{height:g} image")
            rows.append([x0, y0, x1, y1, obj.class_id])
        return np.array(rows, dtype=np.float32).reshape(-1, 5)

    @property
    def classes(self) -> List[str]:
        return self._classes

    def __len__(self) -> int:
        return len(self._paths)

    def image_path(self, idx: int) -> str:
        return self._paths[idx]

    def image_size(self, idx: int) -> Tuple[float, float]:
        """(width, height) of image idx, from its file's header."""
        return self._sizes[idx]

    def label(self, idx: int) -> np.ndarray:
        return self._labels[idx].copy()

    def __getitem__(self, idx: int):
        img = read_image(self._paths[idx], self._max_pixels)
        h, w = img.shape[:2]
        if (float(w), float(h)) != self._sizes[idx]:
            raise ImageError(f"{self._paths[idx]}: decodes to {w}x{h}, its header says "
                             f"{self._sizes[idx][0]:g}x{self._sizes[idx][1]:g}")
        label = self._labels[idx].copy()
        return self._transform(img, label) if self._transform is not None else (img, label)

    def __repr__(self) -> str:
        return f"YOLODetection({self._root})"

