"""YOLO txt datasets (ssd_nobias/data/yolo.py): read as Ultralytics and Roboflow write them, the
same boxes as the VOC files of the same scenes, problems named by file and line, checked by
check_dataset, and trained on."""
import os

import cv2
import numpy as np
import pytest

from conftest import DEMO_CONFIG, tiny_overrides
from ssd_nobias.config import load_config
from ssd_nobias.data.check import CLEAN, PROBLEMS, check_dataset
from ssd_nobias.data.datasets import build_dataset, dataset_classes
from ssd_nobias.data.voc import VOCFormatDetection
from ssd_nobias.data.synthetic import make_synthetic
from ssd_nobias.data.yolo import YOLODetection, label_path, yolo_classes, yolo_images
from ssd_nobias.errors import DataError

CLASSES = ["circle", "square", "triangle", "star"]


@pytest.fixture(scope="module")
def yolo_and_voc(tmp_path_factory):
    base = tmp_path_factory.mktemp("yolo")
    yolo = make_synthetic(str(base / "yolo"), train=6, val=3, size=96, seed=4, fmt="yolo")
    voc = make_synthetic(str(base / "voc"), train=6, val=3, size=96, seed=4)
    return yolo["root"], voc["root"]


def picture(path, w=80, h=60):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, np.full((h, w, 3), 127, np.uint8))


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_the_same_scenes_give_the_same_boxes_as_voc(yolo_and_voc):
    yolo_root, voc_root = yolo_and_voc
    assert yolo_classes(yolo_root) == CLASSES
    for split in ("train", "val"):
        yolo = YOLODetection(yolo_root, [split])
        voc = VOCFormatDetection(voc_root, [("", split)], CLASSES)
        assert len(yolo) == len(voc) > 0
        for i in range(len(yolo)):
            (image, got), (_, want) = yolo[i], voc[i]
            assert yolo.image_size(i) == (image.shape[1], image.shape[0])
            np.testing.assert_array_equal(got[:, 4], want[:, 4])
            np.testing.assert_allclose(got[:, :4], want[:, :4], atol=1e-3)


def test_roboflow_layout_polygons_and_background(tmp_path):
    """data.yaml one level up as Roboflow writes it (`../train/images`), names as a list, a
    segmentation polygon read as its bounding box, an image without a label file as
    background: kept for val, dropped for training."""
    root = tmp_path / "set"
    write(root / "data.yaml", "train: ../train/images\nval: ../valid/images\nnc: 2\n"
                              "names: ['cat', 'dog']\n")
    picture(str(root / "train" / "images" / "a.jpg"))
    picture(str(root / "train" / "images" / "empty.png"))
    picture(str(root / "valid" / "images" / "b.jpg"))
    write(root / "train" / "labels" / "a.txt", "1 0.5 0.5 0.25 0.5\n"
                                               "0 0.1 0.2 0.4 0.2 0.3 0.6\n")
    write(root / "valid" / "labels" / "b.txt", "0 0.5 0.5 1.5 0.5\n")  # crosses the border
    assert label_path(str(root / "train" / "images" / "a.jpg")) == \
        str(root / "train" / "labels" / "a.txt")
    train = YOLODetection(str(root), ["train"], skip_empty=True)
    assert len(train) == 1 and train.classes == ["cat", "dog"]
    _, rows = train[0]
    np.testing.assert_allclose(rows, [[30, 15, 50, 45, 1], [8, 12, 32, 36, 0]], atol=1e-4)
    assert len(YOLODetection(str(root), ["train"])) == 2
    _, rows = YOLODetection(str(root), ["val"])[0]
    np.testing.assert_allclose(rows, [[0, 15, 80, 45, 0]], atol=1e-4)  # clipped


def test_classes_txt_layout_without_data_yaml(tmp_path):
    write(tmp_path / "classes.txt", "tree\n\nbush\n")
    picture(str(tmp_path / "images" / "train" / "x.jpg"))
    write(tmp_path / "labels" / "train" / "x.txt", "1 0.5 0.5 0.5 0.5\n")
    assert yolo_classes(str(tmp_path)) == ["tree", "bush"]
    assert yolo_images(str(tmp_path), "train") == [str(tmp_path / "images" / "train" / "x.jpg")]
    with pytest.raises(DataError, match=r"images/val does not exist"):
        yolo_images(str(tmp_path), "val")


@pytest.mark.parametrize("line, said", [
    ("0 0.5 0.5 0.2\n", "line 2: 4 values"),
    ("zero 0.5 0.5 0.2 0.2\n", "line 2: not numbers"),
    ("7 0.5 0.5 0.2 0.2\n", "line 2: class 7 is not one of the 4 classes"),
    ("0 1.5 0.5 0.2 0.2\n", "line 2: the box is empty once clipped")])
def test_a_bad_label_line_is_named_by_file_and_line(yolo_and_voc, tmp_path, line, said):
    root = tmp_path / "set"
    write(root / "data.yaml", "path: .\ntrain: images/train\nnames: {0: a, 1: b, 2: c, 3: d}\n")
    picture(str(root / "images" / "train" / "p.jpg"))
    write(root / "labels" / "train" / "p.txt", "0 0.5 0.5 0.2 0.2\n" + line)
    with pytest.raises(DataError, match=rf"labels/train/p\.txt: {said}"):
        YOLODetection(str(root), ["train"])
    with pytest.raises(DataError, match="has no split 'val' \\(it has train\\)"):
        YOLODetection(str(root), ["val"])


def test_check_dataset_finds_yolo_problems_by_file(yolo_and_voc, tmp_path):
    yolo_root, _ = yolo_and_voc
    cfg = load_config(DEMO_CONFIG, ["data.dataset=yolo", f"data.root={yolo_root}",
                                    "data.train_splits=[train]", "data.val_splits=[val]"])
    clean = check_dataset(cfg, workers=1, progress=False)
    assert clean.status == CLEAN and clean.classes == CLASSES
    assert clean.stats["train"].images == 6 and clean.stats["val"].images == 3
    assert dataset_classes(cfg) == CLASSES

    root = tmp_path / "bad"
    write(root / "data.yaml", "train: images/train\nval: images/val\nnames: [a, b]\n")
    picture(str(root / "images" / "train" / "ok.jpg"))
    write(root / "labels" / "train" / "ok.txt", "0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n")
    picture(str(root / "images" / "val" / "v.jpg"))
    write(root / "labels" / "val" / "v.txt", "1 2.0 2.0 0.1 0.1\n1 0.5 0.5\n")
    write(root / "images" / "val" / "cut.jpg", "not a jpeg")
    bad = load_config(DEMO_CONFIG, ["data.dataset=yolo", f"data.root={root}",
                                    "data.train_splits=[train]", "data.val_splits=[val]"])
    report = check_dataset(bad, workers=1, progress=False)
    assert report.status == PROBLEMS
    kinds = {(f.kind, os.path.basename(f.file)) for f in report.findings}
    assert kinds == {("unknown class", "ok.txt"), ("box outside the image", "v.txt"),
                     ("unreadable annotation", "v.txt"), ("unreadable image", "cut.jpg")}


@pytest.mark.slow
def test_training_and_evaluation_run_on_a_yolo_set(yolo_and_voc, tmp_path):
    from ssd_nobias.engine.train import train
    from ssd_nobias.evaluation.evaluate import evaluate_checkpoint

    yolo_root, _ = yolo_and_voc
    cfg = load_config(DEMO_CONFIG, tiny_overrides(
        yolo_root, tmp_path / "run", "yolo", **{"data.dataset": "yolo",
                                                "data.train_splits": "[train]",
                                                "data.val_splits": "[val]",
                                                "train.epochs": 1, "train.val_interval": 1}))
    assert len(build_dataset(cfg, "train")) == 6
    train(cfg)
    result = evaluate_checkpoint(cfg, str(tmp_path / "run" / "yolo-last.params"),
                                 str(tmp_path / "eval"), progress=False)
    assert result.metric == "voc07" and 0.0 <= result.value <= 1.0
    assert sorted(result.per_class) == sorted(CLASSES)
