"""COCO-format data: COCO's own files and those annotation tools write, classes from the
categories, and an image whose size disagrees with its entry an error naming both."""
import json
import os

import cv2
import numpy as np
import pytest

from ssd_nobias.data.coco import COCOFormatDetection
from ssd_nobias.data.images import ImageError
from ssd_nobias.data.synthetic import make_synthetic
from ssd_nobias.errors import DataError
from tests.data_files import write_coco


def test_coco_json_loading(tmp_path):
    write_coco(tmp_path, 3, [(0, 7, [10, 5, 20, 10]), (0, 3, [0, 0, 80, 60]),
                             (2, 3, [1, 2, 3, 4])])
    val = COCOFormatDetection(str(tmp_path), ["instances_val"], skip_empty=False)
    assert val.classes == ["circle", "square"] and len(val) == 3
    # GluonCV's inclusive-pixel convention: xmax = x + w - 1, clipped to width - 1
    np.testing.assert_array_equal(val[0][1], [[10, 5, 29, 14, 1], [0, 0, 69, 49, 0]])
    assert val[1][1].shape == (0, 5)  # kept for evaluation, without a dummy row
    assert [val.image_id(i) for i in range(3)] == [100, 101, 102]
    assert len(COCOFormatDetection(str(tmp_path), ["instances_val"], skip_empty=True)) == 2
    with pytest.raises(DataError, match="instances_train.json' does not exist"):
        COCOFormatDetection(str(tmp_path), ["instances_train"])


def test_coco_annotated_size_must_be_the_image_size(tmp_path):
    root = make_synthetic(str(tmp_path), train=2, val=1, size=64, seed=0, fmt="coco")["root"]
    ds = COCOFormatDetection(root, ["instances_train"])
    cv2.imwrite(ds.image_path(1), np.zeros((20, 30, 3), np.uint8))
    ds[0]
    with pytest.raises(ImageError, match=r"instances_train\.json: image \d+ says \d+x\d+ .* but "
                                         r".* is 30x20"):
        ds[1]


@pytest.mark.parametrize("folder", ["", "images", "images/train"])
def test_coco_files_as_annotation_tools_write_them(tmp_path, folder):
    """No coco_url, a file_name relative to the root, its images/ folder or images/<split>
    (CVAT, Label Studio, Roboflow exports); a missing file names where it was looked for."""
    root = make_synthetic(str(tmp_path / "coco"), train=3, val=2, size=96, fmt="coco")["root"]
    target = os.path.join(root, folder)
    os.makedirs(target, exist_ok=True)
    path = os.path.join(root, "annotations", "instances_train.json")
    with open(path) as f:
        spec = json.load(f)
    for entry in spec["images"]:
        os.replace(os.path.join(root, "train", entry["file_name"]),
                   os.path.join(target, entry["file_name"]))
        del entry["coco_url"]
    with open(path, "w") as f:
        json.dump(spec, f)
    ds = COCOFormatDetection(root, ["instances_train"])
    assert len(ds) == 3 and ds.image_path(0) == os.path.join(target, "000001.jpg")
    image, label = ds[0]
    assert image.shape[2] == 3 and label.shape[1] == 5
    os.remove(os.path.join(target, "000002.jpg"))
    with pytest.raises(DataError, match=r"'000002\.jpg'\) is in none of .*coco/000002\.jpg, "):
        COCOFormatDetection(root, ["instances_train"])


def test_annotations_as_some_tools_write_them_load_and_broken_ones_are_named(tmp_path):
    """No `area` (some exporters omit it): the box's. An unknown category_id or a box of
    negative width: a DataError naming the file and annotation, not GluonCV's KeyError or a
    box dropped without a word."""
    root = make_synthetic(str(tmp_path / "coco"), train=3, val=2, size=96, fmt="coco")["root"]
    path = os.path.join(root, "annotations", "instances_train.json")
    with open(path) as f:
        spec = json.load(f)

    def load_with(change):
        broken = json.loads(json.dumps(spec))
        change(broken["annotations"][0])
        with open(path, "w") as f:
            json.dump(broken, f)
        return COCOFormatDetection(root, ["instances_train"])

    whole = load_with(lambda ann: None)
    without_area = load_with(lambda ann: ann.pop("area"))
    np.testing.assert_array_equal(without_area[0][1], whole[0][1])
    first = spec["annotations"][0]["id"]
    with pytest.raises(DataError, match=rf"instances_train.json: annotation {first} \(image "
                                        rf"\d+\): category_id 99 is not one of"):
        load_with(lambda ann: ann.update(category_id=99))
    with pytest.raises(DataError, match=rf"annotation {first} .*: bbox \[10, 10, -5, 8\] is not"):
        load_with(lambda ann: ann.update(bbox=[10, 10, -5, 8]))
