"""The configured dataset: `data.dataset` (voc, voc_custom, coco, yolo), its root, splits and
class names, as the builders read them from the frozen config."""
from __future__ import annotations

import os
from typing import List, Sequence, Tuple

from gluoncv.data import VOCDetection
from mxnet import gluon
from yacs.config import CfgNode

from ssd_nobias.data.coco import COCOFormatDetection
from ssd_nobias.data.voc import VOCFormatDetection
from ssd_nobias.data.yolo import YOLODetection, yolo_classes
from ssd_nobias.errors import DataError


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
        return COCOFormatDetection(d.root, [str(s) for s in splits], transform, skip_empty,
                                   d.max_pixels)
    if d.dataset == "yolo":
        return YOLODetection(d.root, [str(s) for s in splits], transform, skip_empty,
                             d.max_pixels)
    if d.dataset == "voc":
        pairs = [tuple(s) for s in splits]
        if any(len(p) != 2 for p in pairs):
            raise DataError(f"data.{split}_splits must be [year, name] pairs for voc, "
                            f"got {list(splits)}")
        classes = VOCDetection.CLASSES
    else:
        pairs = [("", str(s)) for s in splits]
        classes = _class_names(d)
    return VOCFormatDetection(d.root, pairs, classes, transform, skip_empty, d.max_pixels)


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
