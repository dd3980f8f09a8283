"""COCO-format detection data, COCO's own files and those annotation tools write, on GluonCV's
COCODetection; rows `[xmin, ymin, xmax, ymax, class]` in the original image's pixels."""
from __future__ import annotations

import contextlib
import io
import os
from typing import List, Sequence, Tuple

import numpy as np
from gluoncv.data import COCODetection

from ssd_nobias.data.images import MAX_PIXELS, ImageError, read_image, size_mismatch
from ssd_nobias.errors import DataError, require


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
                 skip_empty: bool = False, max_pixels: int = MAX_PIXELS):
        self._max_pixels = max_pixels
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

    def _check_load_bbox(self, coco, entry):
        """GluonCV's, with every problem a DataError naming the file and annotation: an unknown
        category_id or a box of negative size (GluonCV: KeyError, or silently dropped); a
        missing `area` (annotation tools may omit it) is the box's."""
        split = self._splits[self._coco.index(coco)]  # GluonCV appends each file's COCO first
        path = os.path.join(self._root, "annotations", f"{split}.json")
        objs = coco.loadAnns(coco.getAnnIds(imgIds=[entry["id"]], iscrowd=None))
        for obj in objs:
            where = f"{path}: annotation {obj.get('id')} (image {entry['id']})"
            if obj.get("category_id") not in self.json_id_to_contiguous:
                raise DataError(f"{where}: category_id {obj.get('category_id')} is not one of "
                                f"the file's categories {sorted(self.json_id_to_contiguous)}")
            bbox = obj.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or min(bbox[2:]) < 0:
                raise DataError(f"{where}: bbox {bbox} is not [x, y, width, height] with a "
                                f"size of at least 0 (check-dataset lists every such box)")
            obj.setdefault("area", float(bbox[2]) * float(bbox[3]))
        return super()._check_load_bbox(coco, entry)

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
        img = read_image(self._items[idx], self._max_pixels)
        problem = size_mismatch(img, self.image_size(idx), f"{self._json_of(idx)}: image "
                                f"{self.image_id(idx)}", self._items[idx])
        if problem:
            raise ImageError(problem)
        label = self._labels[idx].copy()
        return self._transform(img, label) if self._transform is not None else (img, label)
