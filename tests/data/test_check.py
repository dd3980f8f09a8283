"""check_dataset.py on small broken datasets: every kind of problem found by file, exit status,
summary table, and the data left exactly as it was."""
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssd_nobias.config import load_config
from ssd_nobias.data.check import CLEAN, PROBLEMS, UNUSABLE, check_dataset, format_summary
from ssd_nobias.data.synthetic import make_synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = [sys.executable, os.path.join(ROOT, "scripts", "check_dataset.py")]
DEMO = os.path.join(ROOT, "configs", "demo_synthetic.yaml")


def tree_digest(root):
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(path.encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def edit_xml(root, image_id, old, new):
    path = os.path.join(root, "Annotations", f"{image_id}.xml")
    with open(path) as f:
        text = f.read()
    assert old in text, (old, text)
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))


def first_box(root, image_id):
    with open(os.path.join(root, "Annotations", f"{image_id}.xml")) as f:
        text = f.read()
    start = text.index("<bndbox>")
    return text[start:text.index("</bndbox>") + len("</bndbox>")]


@pytest.fixture
def broken_voc(tmp_path):
    """The synthetic voc_custom set with one problem of each kind, and what was broken."""
    root = make_synthetic(str(tmp_path / "voc"), train=12, val=4, size=96, seed=3)["root"]
    ids = [f"{i:06d}" for i in range(1, 17)]
    jpeg = os.path.join(root, "JPEGImages", f"{ids[0]}.jpg")
    with open(jpeg, "rb") as f:
        data = f.read()
    with open(jpeg, "wb") as f:
        f.write(data[: len(data) // 2])  # a half-copied file
    cv2.imwrite(os.path.join(root, "JPEGImages", f"{ids[1]}.jpg"),
                np.zeros((48, 64, 3), np.uint8))  # resized after annotation
    edit_xml(root, ids[2], first_box(root, ids[2]),
             "<bndbox><xmin>50</xmin><ymin>10</ymin><xmax>20</xmax><ymax>30</ymax></bndbox>")
    edit_xml(root, ids[3], first_box(root, ids[3]),
             "<bndbox><xmin>20</xmin><ymin>10</ymin><xmax>20</xmax><ymax>30</ymax></bndbox>")
    edit_xml(root, ids[4], first_box(root, ids[4]),
             "<bndbox><xmin>500</xmin><ymin>10</ymin><xmax>530</xmax><ymax>30</ymax></bndbox>")
    edit_xml(root, ids[5], "<name>circle</name>", "<name>hexagon</name>")
    with open(os.path.join(root, "Annotations", f"{ids[6]}.xml")) as f:
        text = f.read()
    head, rest = text.split("<object>", 1)
    with open(os.path.join(root, "Annotations", f"{ids[6]}.xml"), "w") as f:
        f.write(head + "</annotation>")  # no objects
    with open(os.path.join(root, "ImageSets", "Main", "train.txt"), "a") as f:
        f.write(f"{ids[7]}\n{ids[13]}\n")  # listed twice; a val image in train
    return root, ids


def voc_cfg(root):
    return load_config(DEMO, [f"data.root={root}"])


def test_every_problem_is_found_with_its_file(broken_voc):
    root, ids = broken_voc
    before = tree_digest(root)
    report = check_dataset(voc_cfg(root), progress=False)
    assert report.status == PROBLEMS
    found = {(f.kind, os.path.basename(f.file).split(".")[0]) for f in report.findings}
    assert found == {("unreadable image", ids[0]), ("size mismatch", ids[1]),
                     ("inverted box", ids[2]), ("empty box", ids[3]),
                     ("box outside the image", ids[4]), ("unknown class", ids[5]),
                     ("no objects", ids[6]), ("duplicate id", ids[7]),
                     ("duplicate id", ids[13])}
    details = {f.kind: f.detail for f in report.findings}
    assert "truncated JPEG" in details["unreadable image"]
    assert re.search(r"000002\.xml: <size> says \d+x\d+ .*/000002\.jpg is 64x48",
                     details["size mismatch"])
    assert "in both train and val" in {f.detail.split(":")[0] for f in report.findings
                                       if f.kind == "duplicate id"}
    assert tree_digest(root) == before  # nothing of the data changed


def test_summary_counts_images_objects_and_difficult_per_class(tmp_path):
    root = make_synthetic(str(tmp_path), train=6, val=3, size=96, seed=5)["root"]
    report = check_dataset(voc_cfg(root), progress=False)
    assert report.status == CLEAN and report.findings == []
    objects = {"train": {}, "val": {}}
    for split in objects:
        with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt")) as f:
            for image_id in f.read().split():
                with open(os.path.join(root, "Annotations", f"{image_id}.xml")) as g:
                    text = g.read()
                for name in report.classes:
                    objects[split][name] = objects[split].get(name, 0) + \
                        text.count(f"<name>{name}</name>")
    for split, counts in objects.items():
        assert dict(report.stats[split].objects) == {k: v for k, v in counts.items() if v}
    assert report.stats["train"].images == 6 and report.stats["val"].images == 3
    table = format_summary(report)
    assert "difficult" in table and f"train  {'(all)':20s}       6" in table


def test_coco_problems_are_found(tmp_path):
    root = make_synthetic(str(tmp_path), train=5, val=2, size=96, seed=2, fmt="coco")["root"]
    path = os.path.join(root, "annotations", "instances_train.json")
    with open(path) as f:
        data = json.load(f)
    data["annotations"][0]["bbox"][2] = 0  # empty
    data["annotations"][1]["category_id"] = 99  # unknown
    data["images"][1]["width"] += 10  # size mismatch
    with open(path, "w") as f:
        json.dump(data, f)
    image = os.path.join(root, "train", data["images"][2]["file_name"])
    with open(image, "rb") as f:
        head = f.read(300)
    with open(image, "wb") as f:
        f.write(head)
    cfg = load_config(None, [f"data.root={root}", "data.dataset=coco",
                             "model.name=ssd_300_mobilenet0.25_coco",
                             "data.train_splits=[instances_train]",
                             "data.val_splits=[instances_val]"])
    report = check_dataset(cfg, progress=False)
    kinds = sorted(f.kind for f in report.findings)
    assert kinds == ["empty box", "size mismatch", "unknown class", "unreadable image"]
    assert report.status == PROBLEMS


def test_voc2007_layout_is_clean(tmp_path):
    make_synthetic(str(tmp_path), train=4, val=2, size=96, seed=1, layout="voc2007")
    cfg = load_config(None, [f"data.root={tmp_path / 'VOCdevkit'}",
                             "data.train_splits=[[2007,trainval]]",
                             "data.val_splits=[[2007,test]]"])
    report = check_dataset(cfg, progress=False)
    assert report.status == CLEAN and report.stats["val"].images == 2


@pytest.mark.slow
@pytest.mark.subprocess
def test_script_exit_status_clean_problems_unusable(tmp_path, broken_voc):
    clean = make_synthetic(str(tmp_path / "clean"), train=4, val=2, size=96, seed=1)["root"]
    done = subprocess.run(SCRIPT + ["--config", DEMO, f"data.root={clean}"],
                          capture_output=True, text=True)
    assert done.returncode == CLEAN, done.stderr
    assert "no problems found" in done.stdout and "decoding" in done.stderr  # progress bar
    done = subprocess.run(SCRIPT + ["--config", DEMO, f"data.root={broken_voc[0]}", "--list",
                                    "1"], capture_output=True, text=True)
    assert done.returncode == PROBLEMS
    assert "9 problems:" in done.stdout and f"{broken_voc[1][0]}.jpg: " in done.stdout
    done = subprocess.run(SCRIPT + ["--config", DEMO, f"data.root={tmp_path / 'nowhere'}"],
                          capture_output=True, text=True)
    assert done.returncode == UNUSABLE and "nowhere' does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_dataset_finds_annotation_tool_coco_files(tmp_path):
    """check_dataset.py reads a file_name-only COCO set as the loader does."""
    root = make_synthetic(str(tmp_path / "coco"), train=3, val=2, size=96, fmt="coco")["root"]
    for split in ("train", "val"):
        path = os.path.join(root, "annotations", f"instances_{split}.json")
        with open(path) as f:
            spec = json.load(f)
        for entry in spec["images"]:
            del entry["coco_url"]  # the images stay in root/<split>/
        with open(path, "w") as f:
            json.dump(spec, f)
    cfg = load_config(None, [f"data.root={root}", "data.dataset=coco",
                             "model.name=ssd_300_mobilenet1.0_custom",
                             "data.train_splits=[instances_train]",
                             "data.val_splits=[instances_val]"])
    report = check_dataset(cfg, progress=False)
    assert report.status == CLEAN, report.findings
    assert report.stats["train"].images == 3 and report.stats["val"].images == 2


@pytest.mark.parametrize("fmt", ["voc", "yolo"])
def test_an_image_whose_header_claims_gigapixels_is_a_named_finding(tmp_path, fmt):
    """Found from the header alone (decoding would take gigabytes), in each format's reader."""
    from tests.data_files import bomb_png

    info = make_synthetic(str(tmp_path / fmt), train=3, val=2, size=96, seed=1, fmt=fmt)
    image = os.path.join(info["root"], "JPEGImages", "000002.jpg") if fmt == "voc" else \
        os.path.join(info["root"], "images", "train", "000002.jpg")
    bomb_png(Path(image))
    extra = [] if fmt == "voc" else ["data.dataset=yolo", "data.train_splits=[train]",
                                     "data.val_splits=[val]"]
    report = check_dataset(load_config(DEMO, [f"data.root={info['root']}", *extra]))
    assert report.status == PROBLEMS
    found = [f for f in report.findings if f.kind == "unreadable image"]
    assert len(found) == 1 and "000002.jpg: its header says 40000x40000" in found[0].detail


def test_an_empty_val_split_is_a_finding(tmp_path):
    root = make_synthetic(str(tmp_path / "voc"), train=3, val=2, size=96, seed=1)["root"]
    with open(os.path.join(root, "ImageSets", "Main", "val.txt"), "w"):
        pass
    report = check_dataset(load_config(DEMO, [f"data.root={root}"]))
    assert report.status == PROBLEMS
    assert [(f.split, f.kind) for f in report.findings] == [("val", "empty split")]
