"""A whole dataset checked before a long run: every image decoded, every annotation read.

Finds, per split, what the loaders would stop on or quietly work around: missing, truncated or
corrupt images, annotations whose image size disagrees with the image, inverted, empty and
out-of-image boxes, unknown classes, images without objects, ids listed twice or in two splits.
Nothing is written: the user's data is only read.
"""
from __future__ import annotations

import json
import os
from functools import partial
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from yacs.config import CfgNode

from ssd_nobias.data.coco import coco_image_candidates
from ssd_nobias.data.datasets import dataset_classes
from ssd_nobias.data.images import ImageError, read_image, size_mismatch
from ssd_nobias.data.voc import VOCObject, find_image, parse_voc_xml, read_split
from ssd_nobias.data.yolo import image_size as yolo_image_size
from ssd_nobias.data.yolo import label_path, parse_labels, yolo_classes, yolo_images
from ssd_nobias.errors import DataError
from ssd_nobias.progress import tracked

CLEAN, PROBLEMS, UNUSABLE = 0, 1, 2  # exit statuses


@dataclass(frozen=True)
class Finding:
    """One problem, in the file that has it."""

    split: str
    file: str
    kind: str  # e.g. 'unreadable image', 'inverted box'
    detail: str


@dataclass
class SplitStats:
    """Images, objects and difficult objects per class of one split."""

    images: int = 0
    images_per_class: Counter = field(default_factory=Counter)
    objects: Counter = field(default_factory=Counter)
    difficult: Counter = field(default_factory=Counter)


@dataclass
class CheckReport:
    """What check_dataset found: findings, per-split statistics, or why the data is unusable."""

    dataset: str
    classes: List[str]
    findings: List[Finding] = field(default_factory=list)
    stats: Dict[str, SplitStats] = field(default_factory=dict)
    unusable: str = ""

    @property
    def status(self) -> int:
        return UNUSABLE if self.unusable else PROBLEMS if self.findings else CLEAN


@dataclass(frozen=True)
class _Item:
    """One image to check: where it is, what its annotation says."""

    split: str
    image: str  # path ('' when missing)
    annotation: str  # the file that describes it (XML, or the COCO json and image id)
    size_source: str  # where the annotated size is written, for messages
    size: Optional[Tuple[float, float]]  # (width, height) as annotated
    objects: Tuple[VOCObject, ...]
    image_id: str


def check_dataset(cfg: CfgNode, workers: int = 0, progress: bool = True) -> CheckReport:
    """Check the configured dataset's train and val splits; see CheckReport.status."""
    report = CheckReport(cfg.data.dataset, [])
    try:
        splits = {"train": cfg.data.train_splits, "val": cfg.data.val_splits}
        if cfg.data.dataset == "coco":
            items = _coco_items(report, cfg.data.root, splits)
        elif cfg.data.dataset == "yolo":
            items = _yolo_items(report, cfg.data.root, splits)
        else:
            items = _voc_items(report, cfg, splits)
            report.classes = dataset_classes(cfg)
    except DataError as err:
        report.unusable = str(err)
        return report
    if not items:
        report.unusable = f"no images listed in {cfg.data.root} for any split"
        return report
    _check_ids(report, items)
    for split in ("train", "val"):
        if not any(item.split == split for item in items):
            report.findings.append(Finding(split, cfg.data.root, "empty split",
                                           f"data.{split}_splits lists no image"))
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        checked = pool.map(partial(_decode, max_pixels=cfg.data.max_pixels), items)
        for item, problem in tracked(zip(items, checked), total=len(items),
                                            unit="image", desc="decoding", enabled=progress):
            _check_item(report, item, problem)
    return report


def _decode(item: _Item, max_pixels: int
            ) -> Tuple[Optional[Finding], Optional[Tuple[float, float]]]:
    """(a finding if the image cannot be read whole, is over `max_pixels` or is not its
    annotated size, the decoded (width, height))."""
    if not item.image:
        return None, None  # reported when listed
    try:
        image = read_image(item.image, max_pixels)
    except DataError as err:
        return Finding(item.split, item.image, "unreadable image", str(err)), None
    decoded = (float(image.shape[1]), float(image.shape[0]))
    if item.size is None:
        return None, decoded  # the loader decodes the image to learn its size, as here
    mismatch = size_mismatch(image, item.size, item.size_source, item.image)
    return (Finding(item.split, item.annotation, "size mismatch", mismatch)
            if mismatch else None), decoded


def _check_item(report: CheckReport, item: _Item, decoded) -> None:
    stats = report.stats.setdefault(item.split, SplitStats())
    stats.images += 1
    problem, decoded_size = decoded
    if problem is not None:
        report.findings.append(problem)
    size = item.size or decoded_size
    known = 0
    for k, obj in enumerate(item.objects):
        where = f"object {k} ('{obj.name}')"
        if obj.name not in report.classes:
            report.findings.append(Finding(item.split, item.annotation, "unknown class",
                                           f"{where}: class not in {report.classes}"))
            continue
        known += 1
        stats.objects[obj.name] += 1
        stats.difficult[obj.name] += obj.difficult
        problem = _box_problem(obj.box, size)
        if problem:
            report.findings.append(Finding(item.split, item.annotation, problem[0],
                                           f"{where}: {problem[1]}"))
    for name in {o.name for o in item.objects if o.name in report.classes}:
        stats.images_per_class[name] += 1
    if not known and item.split == "train":  # in val, an image of background is a fair test
        report.findings.append(Finding(item.split, item.annotation, "no objects",
                                       "no object of a known class (dropped from training)"))


def _box_problem(box: Sequence[float], size: Optional[Tuple[float, float]]
                 ) -> Optional[Tuple[str, str]]:
    xmin, ymin, xmax, ymax = box
    text = f"xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g} (0-based)"
    if xmin > xmax or ymin > ymax:
        return "inverted box", text
    if xmin == xmax or ymin == ymax:
        return "empty box", text
    if size is not None:
        width, height = size
        if xmax <= 0 or ymax <= 0 or xmin >= width or ymin >= height:
            return "box outside the image", f"{text}, image {width:g}x{height:g}"
        if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
            return "box crosses the border", f"{text}, image {width:g}x{height:g} (clipped " \
                                             f"when loaded)"
    return None


def _check_ids(report: CheckReport, items: Sequence[_Item]) -> None:
    seen: Dict[str, Counter] = defaultdict(Counter)
    for item in items:
        seen[item.image_id][item.split] += 1
    for image_id, splits in seen.items():
        for split, count in splits.items():
            if count > 1:
                report.findings.append(Finding(split, image_id, "duplicate id",
                                               f"listed {count} times in {split}"))
        if len(splits) > 1:
            report.findings.append(Finding("+".join(sorted(splits)), image_id, "duplicate id",
                                           f"in both {' and '.join(sorted(splits))}: val "
                                           f"images the model trains on"))


def _voc_items(report: CheckReport, cfg: CfgNode, splits: Dict[str, list]) -> List[_Item]:
    root = os.path.expanduser(cfg.data.root)
    if not os.path.isdir(root):
        raise DataError(f"dataset root '{root}' does not exist")
    items = []
    for split, entries in splits.items():
        for entry in entries:
            if cfg.data.dataset == "voc":
                if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                    raise DataError(f"data.{split}_splits must be [year, name] pairs for voc, "
                                    f"got {entries}")
                base, name = os.path.join(root, f"VOC{entry[0]}"), str(entry[1])
            else:
                base, name = root, str(entry)
            items += [_voc_item(report, split, base, i) for i in read_split(base, name)]
    return items


def _voc_item(report: CheckReport, split: str, base: str, image_id: str) -> _Item:
    image = find_image(base, image_id) or ""
    if not image:
        report.findings.append(Finding(split, os.path.join(base, "JPEGImages", image_id + ".jpg"),
                                       "missing image",
                                       f"image '{image_id}' is listed but has no file"))
    annotation = os.path.join(base, "Annotations", f"{image_id}.xml")
    try:
        size, objects = parse_voc_xml(annotation)
    except DataError as err:
        report.findings.append(Finding(split, annotation, "unreadable annotation", str(err)))
        size, objects = None, []
    return _Item(split, image, annotation, f"{annotation}: <size>", size, tuple(objects),
                 os.path.join(base, image_id))


def _coco_items(report: CheckReport, root: str, splits: Dict[str, list]) -> List[_Item]:
    root = os.path.expanduser(root)
    items, categories = [], {}
    for split, names in splits.items():
        for name in names:
            path = os.path.join(root, "annotations", f"{name}.json")
            data = _read_json(path)
            found = {c["id"]: str(c["name"]) for c in data.get("categories", [])}
            if not categories:
                categories = found
                report.classes = list(found.values())
            elif found != categories:
                report.findings.append(Finding(split, path, "categories differ",
                                               f"categories {sorted(found.values())} differ "
                                               f"from the first file's"))
            items += _coco_split_items(report, split, root, name, path, data, categories)
    return items


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise DataError(f"annotation file '{path}' does not exist")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable COCO json ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO detection file (no 'images' list)")
    return data


def _coco_split_items(report: CheckReport, split: str, root: str, name: str, path: str,
                      data: dict, categories: Dict[int, str]) -> List[_Item]:
    images = {}
    for entry in data["images"]:
        images.setdefault(entry.get("id"), entry)
    objects = defaultdict(list)
    for k, ann in enumerate(data.get("annotations", [])):
        if ann.get("image_id") not in images:
            report.findings.append(Finding(split, path, "annotation without image",
                                           f"annotation {ann.get('id', k)} refers to image "
                                           f"{ann.get('image_id')}, which is not listed"))
            continue
        x, y, w, h = (float(v) for v in ann.get("bbox", (0, 0, 0, 0)))
        label = categories.get(ann.get("category_id"), f"category {ann.get('category_id')}")
        objects[ann["image_id"]].append(
            VOCObject(label, (x, y, x + w, y + h), bool(ann.get("iscrowd", 0))))
    items = []
    for entry in data["images"]:
        where = f"{path}: image {entry.get('id')}"
        candidates = coco_image_candidates(root, entry, [name])
        if not candidates:
            report.findings.append(Finding(split, path, "no file name",
                                           f"image {entry.get('id')} has neither coco_url nor "
                                           f"file_name"))
            continue
        image = next((c for c in candidates if os.path.isfile(c)), "")
        if not image:
            report.findings.append(Finding(split, candidates[0], "missing image",
                                           f"{where} has no file (looked for "
                                           f"{', '.join(candidates)})"))
        size = (float(entry["width"]), float(entry["height"])) \
            if "width" in entry and "height" in entry else None
        items.append(_Item(split, image, where, where, size, tuple(objects[entry.get("id")]),
                           f"{name}:{entry.get('id')}"))
    return items


def _yolo_items(report: CheckReport, root: str, splits: Dict[str, list]) -> List[_Item]:
    """Items of a YOLO txt dataset: boxes in pixels of the size the image's header gives, a
    label file's malformed lines and unknown class ids as findings."""
    report.classes = yolo_classes(root)
    items = []
    for split, names in splits.items():
        for image in (p for name in names for p in yolo_images(root, str(name))):
            labels = label_path(image)
            try:
                size = yolo_image_size(image)
                objects, problems = parse_labels(labels, size)
            except ImageError:  # _decode reports the image as unreadable
                size, objects, problems = None, [], []
            report.findings += [Finding(split, labels, "unreadable annotation", problem)
                                for problem in problems]
            names_of = [report.classes[o.class_id] if 0 <= o.class_id < len(report.classes)
                        else f"class id {o.class_id}" for o in objects]
            items.append(_Item(split, image, labels, f"{image}: header", size,
                               tuple(VOCObject(n, o.box, False)
                                     for n, o in zip(names_of, objects)), image))
    return items


def format_summary(report: CheckReport) -> str:
    """The per-split, per-class table of images, objects and difficult (COCO: crowd) objects."""
    hard = "crowd" if report.dataset == "coco" else "difficult"
    rows = [f"{'split':6s} {'class':20s} {'images':>7s} {'objects':>8s} {hard:>9s}"]
    for split, s in report.stats.items():
        for name in report.classes:
            rows.append(f"{split:6s} {name:20s} {s.images_per_class[name]:7d} "
                        f"{s.objects[name]:8d} {s.difficult[name]:9d}")
        rows.append(f"{split:6s} {'(all)':20s} {s.images:7d} {sum(s.objects.values()):8d} "
                    f"{sum(s.difficult.values()):9d}")
    return "\n".join(rows)


def format_findings(findings: Iterable[Finding], per_kind: int = 20) -> str:
    """Findings grouped by kind, at most `per_kind` listed each, with their counts."""
    by_kind: Dict[str, List[Finding]] = defaultdict(list)
    for f in findings:
        by_kind[f.kind].append(f)
    rows = []
    for kind, group in sorted(by_kind.items()):
        rows.append(f"{kind}: {len(group)}")
        for f in group[:per_kind]:
            rows.append(f"  [{f.split}] {f.file}: {f.detail}")
        if len(group) > per_kind:
            rows.append(f"  ... {len(group) - per_kind} more")
    return "\n".join(rows)
