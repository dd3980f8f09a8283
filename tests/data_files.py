"""VOC and COCO files written for the data tests: images of flat grey, annotations as
annotation tools write them."""
import json
import os
import struct
import zlib

import cv2
import numpy as np

from ssd_nobias.data.voc import VOCFormatDetection

CLASSES = ("circle", "square", "triangle")


def obj(name, box, difficult=0, truncated=0):
    x0, y0, x1, y1 = box
    return (f"<object><name>{name}</name><truncated>{truncated}</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


def write_item(root, image_id, objects, size=(80, 60), ext=".jpg", gray=False, split="train"):
    """One image (w, h) and its VOC XML under root, listed in ImageSets/Main/<split>.txt."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    w, h = size
    img = np.full((h, w) if gray else (h, w, 3), 128, np.uint8)
    cv2.imwrite(os.path.join(root, "JPEGImages", image_id + ext), img)
    xml = (f"<annotation><filename>{image_id}{ext}</filename><size><width>{w}</width>"
           f"<height>{h}</height><depth>3</depth></size>{''.join(objects)}</annotation>")
    with open(os.path.join(root, "Annotations", image_id + ".xml"), "w") as f:
        f.write(xml)
    with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "a") as f:
        f.write(image_id + "\n")


def custom(root, split="train", skip_empty=False):
    return VOCFormatDetection(str(root), [("", split)], CLASSES, skip_empty=skip_empty)


def write_coco(root, images, boxes):
    os.makedirs(root / "annotations", exist_ok=True)
    os.makedirs(root / "val", exist_ok=True)
    doc = {"images": [], "annotations": [],
           "categories": [{"id": 3, "name": "circle"}, {"id": 7, "name": "square"}]}
    for i in range(images):
        cv2.imwrite(str(root / "val" / f"{i}.jpg"), np.zeros((50, 70, 3), np.uint8))
        doc["images"].append({"id": 100 + i, "file_name": f"{i}.jpg", "width": 70,
                              "height": 50, "coco_url": f"http://x/val/{i}.jpg"})
    for k, (image, cat, bbox) in enumerate(boxes):
        doc["annotations"].append({"id": k + 1, "image_id": 100 + image, "category_id": cat,
                                   "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
    (root / "annotations" / "instances_val.json").write_text(json.dumps(doc))


def bomb_png(path, width=40000, height=40000):
    """A PNG of about 70 bytes whose header claims width x height (decoding would take GBs)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                     chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return str(path)
