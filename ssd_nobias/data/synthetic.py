"""A deterministic synthetic detection dataset in VOC or COCO format, for the demo and the tests.

Scenes: a textured background with unannotated clutter, and 2-6 filled objects of four classes
that differ in shape and colour, from small to large, stretched up to 1.8x either way, cut by
the border or partly hidden by later objects. Each object's box is the tight box of all its
drawn pixels inside the image (hidden parts included, as a VOC annotator would draw it).
The 'hard' variant (the study's second dataset): eight classes, 3-9 objects, half of them small.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Tuple

import cv2
import numpy as np
import yaml

from ssd_nobias.atomic import replacing_folder

SHAPE_CLASSES = ("circle", "square", "triangle", "star")
HARD_CLASSES = SHAPE_CLASSES + ("hexagon", "diamond", "cross", "ring")
# The voc2007 layout names the shapes after the first VOC classes.
def voc_names() -> Dict[str, str]:
    """Each class's VOC name in the voc2007 layout: the first eight of VOC's classes (GluonCV's
    list, imported here only: it brings MXNet, which make-synthetic --help does without)."""
    from gluoncv.data import VOCDetection
    return dict(zip(HARD_CLASSES, VOCDetection.CLASSES[:8]))
_COLORS = {"circle": (215, 50, 45), "square": (40, 100, 225), "triangle": (235, 195, 30),
           "star": (40, 170, 70), "hexagon": (150, 70, 200), "diamond": (240, 130, 40),
           "cross": (40, 185, 195), "ring": (205, 60, 150)}  # RGB


class Variant:
    """What a dataset's scenes hold: the classes, objects per scene, and object sizes."""

    def __init__(self, classes: Tuple[str, ...], objects: Tuple[int, int], small: float,
                 small_side: Tuple[float, float], large_side: Tuple[float, float]):
        self.classes, self.objects, self.small = classes, objects, small
        self.small_side, self.large_side = small_side, large_side

    def side(self, rng: np.random.Generator) -> float:
        """An object's side as a fraction of the image's shorter side."""
        return rng.uniform(*self.small_side) if rng.random() < self.small \
            else rng.uniform(*self.large_side)


VARIANTS = {"shapes": Variant(SHAPE_CLASSES, (2, 7), 0.2, (0.05, 0.12), (0.15, 0.6)),
            "hard": Variant(HARD_CLASSES, (3, 10), 0.5, (0.03, 0.1), (0.1, 0.35))}
MIN_VISIBLE = 0.4  # objects are placed so that at least this much of each stays visible
DIFFICULT_VISIBLE = 0.7  # less visible than this, or smaller than DIFFICULT_SIDE: difficult
DIFFICULT_SIDE = 12


def _polygon(shape: str, cx: float, cy: float, rx: float, ry: float, angle: float):
    if shape == "square":
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    elif shape == "triangle":
        pts = np.array([[0, -1], [1, 0.9], [-1, 0.9]], float)
    elif shape == "hexagon":
        t = np.arange(6) * np.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "diamond":
        pts = np.array([[0, -1], [0.6, 0], [0, 1], [-0.6, 0]], float)
    elif shape == "cross":
        a = 0.33
        pts = np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1],
                        [-a, a], [-1, a], [-1, -a], [-a, -a]], float)
    else:  # star
        t = np.arange(10) * np.pi / 5 - np.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    pts = pts * [rx, ry]
    c, s = np.cos(angle), np.sin(angle)
    pts = pts @ np.array([[c, s], [-s, c]])
    return np.round(pts + [cx, cy]).astype(np.int32)


def _shape_mask(shape: str, h: int, w: int, cx, cy, rx, ry, angle) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    if shape in ("circle", "ring"):
        cv2.ellipse(mask, (int(cx), int(cy)), (int(rx), int(ry)), float(np.degrees(angle)),
                    0, 360, 1, -1)
        if shape == "ring":  # the inner half of the radius left empty
            cv2.ellipse(mask, (int(cx), int(cy)), (int(rx / 2), int(ry / 2)),
                        float(np.degrees(angle)), 0, 360, 0, -1)
    else:
        cv2.fillPoly(mask, [_polygon(shape, cx, cy, rx, ry, angle)], 1)
    return mask.astype(bool)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A muted two-colour gradient with noise, faint lines and unannotated clutter."""
    a, b = rng.uniform(60, 190, size=(2, 3))
    t = np.linspace(0, 1, w if rng.random() < 0.5 else h)
    ramp = a + (b - a) * t[:, None]
    img = np.broadcast_to(ramp[None] if len(t) == w else ramp[:, None], (h, w, 3)).copy()
    img += rng.normal(0, 10, size=(h, w, 1)) + rng.normal(0, 4, size=(h, w, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 8)):  # lines
        p, q = rng.uniform(0, [w, h], size=(2, 2)).astype(int)
        gray = int(rng.uniform(40, 220))
        cv2.line(img, tuple(map(int, p)), tuple(map(int, q)), (gray,) * 3, int(rng.integers(1, 3)))
    for _ in range(rng.integers(4, 12)):  # clutter: outlines and blobs in dull colours
        c = rng.uniform(0, [w, h]).astype(int)
        r = rng.uniform(3, 0.12 * min(w, h), size=2).astype(int) + 1
        color = tuple(int(v) for v in rng.uniform(70, 170) + rng.uniform(-25, 25, 3))
        kind = rng.integers(3)
        if kind == 0:
            cv2.ellipse(img, tuple(map(int, c)), tuple(map(int, r)), float(rng.uniform(0, 180)),
                        0, 360, color, 1)
        elif kind == 1:
            cv2.rectangle(img, tuple(map(int, c - r)), tuple(map(int, c + r)), color, 1)
        else:
            cv2.circle(img, tuple(map(int, c)), int(r[0] // 2 + 1), color, -1)
    return img


def _scene(rng: np.random.Generator, size: int, variant: Variant
           ) -> Tuple[np.ndarray, List[dict]]:
    """One RGB image and its objects (class, box x0 y0 x1 y1 inclusive, difficult, truncated)."""
    w, h = (int(v) for v in np.round(size * rng.uniform(0.75, 1.25, size=2)))
    img = _background(rng, h, w)
    owner = np.full((h, w), -1, np.int32)  # which object each pixel shows
    placed: List[dict] = []
    for _ in range(rng.integers(*variant.objects)):
        shape = variant.classes[rng.integers(len(variant.classes))]
        side = min(w, h) * variant.side(rng)
        aspect = np.exp(rng.uniform(-np.log(1.8), np.log(1.8)))
        rx, ry = side * np.sqrt(aspect) / 2, side / np.sqrt(aspect) / 2
        angle = np.radians(rng.uniform(-15, 15))
        for _attempt in range(10):
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            mask = _shape_mask(shape, h, w, cx, cy, rx, ry, angle)
            area = int(mask.sum())
            if area < 16:
                continue
            trial = np.where(mask, len(placed), owner)
            shown = np.bincount(trial[trial >= 0].ravel(), minlength=len(placed) + 1)
            if all(shown[k] >= MIN_VISIBLE * o["area"] for k, o in enumerate(placed)):
                break
        else:
            continue
        owner = trial
        ys, xs = np.nonzero(mask)
        placed.append({"shape": shape, "mask": mask, "area": area,
                       "box": (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))})
    for k, o in enumerate(placed):
        x0, y0, x1, y1 = o["box"]
        box = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        shade = np.linspace(-30, 30, x1 - x0 + 1)[None, :, None] * rng.choice([-1, 1])
        color = np.array(_COLORS[o["shape"]], float) + rng.uniform(-20, 20, 3)
        fill = np.clip(color + shade + rng.normal(0, 6, (y1 - y0 + 1, x1 - x0 + 1, 1)), 0, 255)
        mask = o.pop("mask")[box]
        visible = owner[box] == k
        edge = visible & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8),
                                    borderType=cv2.BORDER_REPLICATE).astype(bool)
        region = img[box]
        region[visible] = fill[visible].astype(np.uint8)
        region[edge] = np.clip(color * 0.55, 0, 255).astype(np.uint8)
        o["visible"] = float(visible.sum()) / o["area"]
        o["truncated"] = int(x0 == 0 or y0 == 0 or x1 == w - 1 or y1 == h - 1)
        o["difficult"] = int(o["visible"] < DIFFICULT_VISIBLE or
                             min(x1 - x0, y1 - y0) + 1 < DIFFICULT_SIDE)
    return img, placed


def _voc_xml(filename: str, w: int, h: int, objects: List[dict], names: Dict[str, str]) -> str:
    parts = [f"<annotation>\n  <folder>synthetic</folder>\n  <filename>{filename}</filename>\n"
             f"  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>\n"
             f"  <segmented>0</segmented>\n"]
    for o in objects:
        x0, y0, x1, y1 = o["box"]  # VOC boxes are 1-based and inclusive
        parts.append(f"  <object>\n    <name>{names[o['shape']]}</name>\n"
                     f"    <pose>Unspecified</pose>\n    <truncated>{o['truncated']}</truncated>\n"
                     f"    <difficult>{o['difficult']}</difficult>\n"
                     f"    <bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                     f"<xmax>{x1 + 1}</xmax><ymax>{y1 + 1}</ymax></bndbox>\n  </object>\n")
    parts.append("</annotation>\n")
    return "".join(parts)


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# What make_synthetic writes at the top of its folder, in any layout and format: the only
# names it may replace.
OUTPUT_NAMES = ("Annotations", "JPEGImages", "ImageSets", "classes.txt", "VOCdevkit",
                "annotations", "train", "val", "test", "trainval", "images", "labels",
                "data.yaml")


def make_synthetic(out: str, train: int = 200, val: int = 50, size: int = 300, seed: int = 0,
                   layout: str = "custom", fmt: str = "voc", variant: str = "shapes",
                   test: int = 0) -> dict:
    """Write the dataset under `out`; return where it is and what it holds.

    `test`: with layout 'custom', also a 'test' split of that many images (scenes of their own
    random stream, as each split's are), for studies that choose on val and report on test.

    layout 'custom': out/{Annotations,JPEGImages,ImageSets/Main/{train,val}.txt,classes.txt};
    layout 'voc2007': out/VOCdevkit/VOC2007 with trainval/test splits and VOC class names.
    fmt 'coco': out/annotations/instances_{train,val}.json and images in out/{train,val}/.
    fmt 'yolo': out/data.yaml, images in out/images/{train,val}/, labels in out/labels/...
    The same arguments always write the same bytes.
    """
    if layout not in ("custom", "voc2007"):
        raise ValueError(f"layout must be 'custom' or 'voc2007', not {layout!r}")
    if fmt not in ("voc", "coco", "yolo"):
        raise ValueError(f"format must be 'voc', 'coco' or 'yolo', not {fmt!r}")
    if train < 1 or val < 1:
        raise ValueError(f"train and val must be at least 1 image each (got {train}, {val})")
    if test < 0 or (test and layout != "custom"):
        raise ValueError(f"a test split is written with layout 'custom' only, of at least 0 "
                         f"images (got {test} with layout {layout!r})")
    if size < 64:
        raise ValueError(f"size must be at least 64 pixels (got {size})")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    with replacing_folder(out, OUTPUT_NAMES, "make-synthetic") as tmp:
        info = _write(tmp, train, val, size, seed, layout, fmt, variant, test)
    root = os.path.normpath(os.path.join(out, os.path.relpath(info["root"], tmp)))
    return {**info, "root": root}


def _write(out: str, train: int, val: int, size: int, seed: int, layout: str, fmt: str,
           variant: str, test: int) -> dict:
    """make_synthetic's work, into the empty folder `out`."""
    kind = VARIANTS[variant]
    names = voc_names() if layout == "voc2007" else {c: c for c in kind.classes}
    classes = [names[c] for c in kind.classes]
    split_names = ("trainval", "test") if layout == "voc2007" else ("train", "val")
    if fmt in ("coco", "yolo"):
        root = out
    elif layout == "voc2007":
        root = os.path.join(out, "VOCdevkit")
    else:
        root = out
    base = os.path.join(root, "VOC2007") if fmt == "voc" and layout == "voc2007" else root
    counts = {split_names[0]: train, split_names[1]: val}
    if test:
        counts["test"] = test
        split_names += ("test",)
    next_id = 1
    for split_index, (split, count) in enumerate(counts.items()):
        ids = [f"{next_id + i:06d}" for i in range(count)]
        next_id += count
        scenes = [_scene(np.random.default_rng([seed, split_index, i]), size, kind)
                  for i in range(count)]
        if fmt == "voc":
            _write_voc(base, split, ids, scenes, names)
        elif fmt == "yolo":
            _write_yolo(root, split, ids, scenes, classes, names)
        else:
            _write_coco(root, split, ids, scenes, classes, names)
    if fmt == "voc" and layout == "custom":
        _write_text(os.path.join(root, "classes.txt"), "\n".join(classes) + "\n")
    if fmt == "yolo":
        _write_text(os.path.join(root, "data.yaml"), yaml.safe_dump(
            {"path": ".", **{s: f"images/{s}" for s in split_names},
             "names": dict(enumerate(classes))}, sort_keys=False))
    return {"root": root, "classes": classes, "splits": split_names, "counts": counts,
            "format": fmt, "layout": layout, "variant": variant}


def _write_voc(base: str, split: str, ids, scenes, names) -> None:
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    for image_id, (img, objects) in zip(ids, scenes):
        h, w = img.shape[:2]
        cv2.imwrite(os.path.join(base, "JPEGImages", image_id + ".jpg"), img[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        _write_text(os.path.join(base, "Annotations", image_id + ".xml"),
                    _voc_xml(image_id + ".jpg", w, h, objects, names))
    _write_text(os.path.join(base, "ImageSets", "Main", split + ".txt"), "\n".join(ids) + "\n")


def _write_yolo(root: str, split: str, ids, scenes, classes, names) -> None:
    """Ultralytics' layout; a box's centre and size in [0, 1] recover its pixel corners."""
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(root, sub, split), exist_ok=True)
    for image_id, (img, objects) in zip(ids, scenes):
        h, w = img.shape[:2]
        cv2.imwrite(os.path.join(root, "images", split, image_id + ".jpg"), img[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines = []
        for o in objects:
            x0, y0, x1, y1 = o["box"]
            lines.append(f"{classes.index(names[o['shape']])} {(x0 + x1) / 2 / w:.8f} "
                         f"{(y0 + y1) / 2 / h:.8f} {(x1 - x0) / w:.8f} {(y1 - y0) / h:.8f}\n")
        _write_text(os.path.join(root, "labels", split, image_id + ".txt"), "".join(lines))


def _write_coco(root: str, split: str, ids, scenes, classes, names) -> None:
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, split), exist_ok=True)
    doc = {"info": {"description": "ssd_nobias synthetic shapes"}, "licenses": [],
           "images": [], "annotations": [],
           "categories": [{"id": k + 1, "name": c, "supercategory": "shape"}
                          for k, c in enumerate(classes)]}
    for image_id, (img, objects) in zip(ids, scenes):
        h, w = img.shape[:2]
        file_name = image_id + ".jpg"
        cv2.imwrite(os.path.join(root, split, file_name), img[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        doc["images"].append({"id": int(image_id), "file_name": file_name, "width": w,
                              "height": h, "coco_url": f"http://synthetic/{split}/{file_name}"})
        for o in objects:
            x0, y0, x1, y1 = o["box"]
            doc["annotations"].append({
                "id": len(doc["annotations"]) + 1, "image_id": int(image_id),
                "category_id": classes.index(names[o["shape"]]) + 1,
                "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1], "area": int(o["area"]),
                "iscrowd": 0})
    _write_text(os.path.join(root, "annotations", f"instances_{split}.json"),
                json.dumps(doc, indent=1))
