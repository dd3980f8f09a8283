"""VOC-format folders read strictly: boxes, classes, difficult flags, and every bad file an
error that names it."""
import logging
import os

import cv2
import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.data.images import ImageError
from ssd_nobias.data.voc import VOCFormatDetection
from ssd_nobias.errors import DataError
from tests.data_files import CLASSES, custom, obj, write_item


def test_voc_xml_parsing(tmp_path):
    write_item(tmp_path, "a", [obj("circle", (11, 21, 40, 50)),
                               obj("Triangle ", (1, 1, 80, 60), difficult=1, truncated=1)])
    ds = custom(tmp_path)
    img, label = ds[0]
    assert img.shape == (60, 80, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(label, [[10, 20, 39, 49, 0, 0], [0, 0, 79, 59, 2, 1]])
    assert ds.image_size(0) == (80.0, 60.0)
    assert ds.classes == CLASSES


def test_boxes_over_the_border_are_clipped(tmp_path):
    write_item(tmp_path, "a", [obj("square", (-5, 0, 100, 61)), obj("circle", (70, 50, 81, 61))])
    np.testing.assert_array_equal(custom(tmp_path)[0][1],
                                  [[0, 0, 80, 60, 1, 0], [69, 49, 80, 60, 0, 0]])


@pytest.mark.parametrize("box", [(30, 10, 30, 20), (40, 10, 20, 20), (90, 10, 95, 20)])
def test_empty_box_names_file_and_object(tmp_path, box):
    write_item(tmp_path, "bad7", [obj("circle", (1, 1, 5, 5)), obj("square", box)])
    with pytest.raises(DataError, match=r"bad7\.xml: object 1 \('square'\) has an empty box"):
        custom(tmp_path)


def test_unknown_classes_skipped_with_one_warning(tmp_path, caplog):
    write_item(tmp_path, "a", [obj("circle", (1, 1, 9, 9)), obj("dog", (2, 2, 8, 8))])
    write_item(tmp_path, "b", [obj("dog", (1, 1, 9, 9)), obj("cat", (2, 2, 8, 8))])
    with caplog.at_level(logging.WARNING):
        ds = custom(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if "not in the class list" in r.message]
    assert len(warnings) == 1 and "cat (1), dog (2)" in warnings[0]
    assert len(ds[0][1]) == 1 and len(ds[1][1]) == 0


def test_objectless_images_dropped_in_train_kept_in_val(tmp_path, caplog):
    write_item(tmp_path, "a", [obj("circle", (1, 1, 9, 9))])
    write_item(tmp_path, "b", [])
    with caplog.at_level(logging.WARNING):
        assert len(custom(tmp_path, skip_empty=True)) == 1
    assert any("skipped 1 of 2 images that have no object" in r.getMessage()
               for r in caplog.records)
    val = custom(tmp_path, skip_empty=False)
    assert len(val) == 2 and val[1][1].shape == (0, 6)


def test_grayscale_and_png_load_as_rgb(tmp_path):
    write_item(tmp_path, "g", [obj("circle", (1, 1, 9, 9))], gray=True)
    write_item(tmp_path, "p", [obj("circle", (1, 1, 9, 9))], ext=".png")
    ds = custom(tmp_path)
    assert ds[0][0].shape == (60, 80, 3) and ds[1][0].shape == (60, 80, 3)
    assert ds.image_path(1).endswith("p.png")


def test_missing_root_split_and_image(tmp_path):
    with pytest.raises(DataError, match="nowhere.* does not exist"):
        VOCFormatDetection(str(tmp_path / "nowhere"), [("", "train")], CLASSES)
    write_item(tmp_path, "a", [obj("circle", (1, 1, 9, 9))])
    with pytest.raises(DataError, match=r"val\.txt' does not exist"):
        custom(tmp_path, split="val")
    os.remove(tmp_path / "JPEGImages" / "a.jpg")
    with pytest.raises(DataError, match="image 'a' is listed but .*a.jpg"):
        custom(tmp_path)


def test_malformed_xml_and_missing_annotation(tmp_path):
    write_item(tmp_path, "a", [obj("circle", (1, 1, 9, 9))])
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation><size>")
    with pytest.raises(DataError, match=r"a\.xml: malformed XML"):
        custom(tmp_path)
    os.remove(tmp_path / "Annotations" / "a.xml")
    with pytest.raises(DataError, match=r"annotation '.*a\.xml' does not exist"):
        custom(tmp_path)


@pytest.mark.parametrize("content, what", [
    (b"", r"cannot decode image \(empty file"), (b"\xff\xd8garbage", "truncated JPEG"),
    (b"\xff\xd8garbage\xff\xd9", r"cannot decode image \(corrupt")])
def test_corrupt_or_empty_image_names_the_file(tmp_path, content, what):
    write_item(tmp_path, "a", [obj("circle", (1, 1, 9, 9))])
    (tmp_path / "JPEGImages" / "a.jpg").write_bytes(content)
    ds = custom(tmp_path)
    with pytest.raises(DataError, match=rf"a\.jpg: {what}"):
        ds[0]


def test_truncated_image_is_an_error_naming_it_not_grey_pixels(tmp_path):
    write_item(tmp_path, "a", [obj("circle", (1, 1, 9, 9))])
    path = tmp_path / "JPEGImages" / "a.jpg"
    path.write_bytes(path.read_bytes()[:-20])
    assert mx.image.imread(str(path)).shape == (60, 80, 3)  # what a plain decoder does
    with pytest.raises(ImageError, match=r"a\.jpg: truncated JPEG: no end-of-image marker"):
        custom(tmp_path)[0]


def test_annotated_size_must_be_the_image_size(tmp_path):
    write_item(tmp_path, "a", [obj("circle", (1, 1, 9, 9))])
    cv2.imwrite(str(tmp_path / "JPEGImages" / "a.jpg"), np.zeros((30, 40, 3), np.uint8))
    ds = custom(tmp_path)
    with pytest.raises(ImageError, match=r"a\.xml: <size> says 80x60 \(width x height\) but "
                                         r".*a\.jpg is 40x30"):
        ds[0]
