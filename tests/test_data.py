"""VOC-format parsing, strict errors on bad data, COCO loading, and the loaders' batches."""
import json
import logging
import random
import os

import cv2
import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.config import load_config
from ssd_nobias.data.datasets import (COCOFormatDetection, EpochSampler, SSDTrainTransform,
                                      ValTransform, VOCFormatDetection, build_dataset,
                                      dataset_classes, per_image_normalize,
                                      random_crop_with_constraints, split_batch, train_loader,
                                      val_loader)
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.errors import DataError
from ssd_nobias.data.images import ImageError
from ssd_nobias.data.synthetic import make_synthetic

CLASSES = ("circle", "square", "triangle")

PREP_64 = Preprocess(64, (0.5,) * 3, (0.25,) * 3)
PREP_300 = Preprocess(300, (0.5,) * 3, (0.25,) * 3)


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


def test_coco_annotated_size_must_be_the_image_size(tmp_path):
    from ssd_nobias.data.synthetic import make_synthetic
    root = make_synthetic(str(tmp_path), train=2, val=1, size=64, seed=0, fmt="coco")["root"]
    ds = COCOFormatDetection(root, ["instances_train"])
    cv2.imwrite(ds.image_path(1), np.zeros((20, 30, 3), np.uint8))
    ds[0]
    with pytest.raises(ImageError, match=r"instances_train\.json: image \d+ says \d+x\d+ .* but "
                                         r".* is 30x20"):
        ds[1]


def training_set_with_a_bad_image(root):
    for i in range(4):
        write_item(root, f"im{i}", [obj("circle", (10, 10, 40, 40))])
    bad = root / "JPEGImages" / "im1.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return custom(root)


def test_bad_training_image_stops_the_loader_naming_it(tmp_path):
    ds = training_set_with_a_bad_image(tmp_path)
    anchors = mx.nd.array(np.random.RandomState(0).uniform(0, 1, (1, 50, 4)))
    loader = train_loader(ds, anchors, PREP_64, 4, 0, EpochSampler(4, 0),
                          max_expand=1)
    with pytest.raises(ImageError, match=r"im1\.jpg: truncated JPEG"):
        list(loader)


def test_skip_policy_replaces_a_bad_image_with_a_named_count(tmp_path, caplog):
    ds = training_set_with_a_bad_image(tmp_path)
    anchors = mx.nd.array(np.random.RandomState(0).uniform(0, 1, (1, 50, 4)))
    loader = train_loader(ds, anchors, PREP_64, 4, 0, EpochSampler(4, 0),
                          max_expand=1, bad_images="skip")
    with caplog.at_level(logging.WARNING):
        batches = list(loader) + list(loader)
    assert [b[0].shape[0] for b in batches] == [4, 4]
    skips = [r.getMessage() for r in caplog.records if "skipped a bad image" in r.getMessage()]
    assert len(skips) == 1 and "im1.jpg: truncated JPEG" in skips[0] and "1 so far" in skips[0]


def test_voc_years_layout(tmp_path):
    root = tmp_path / "VOCdevkit"
    write_item(root / "VOC2007", "000001", [obj("dog", (1, 1, 20, 20), difficult=1)],
               split="test")
    cfg = load_config(None, [f"data.root={root}", "data.val_splits=[[2007,test]]"])
    ds = build_dataset(cfg, "val")
    np.testing.assert_array_equal(ds[0][1], [[0, 0, 19, 19, 11, 1]])  # dog is VOC class 11
    assert len(dataset_classes(cfg)) == 20


def test_classes_from_a_file(tmp_path):
    (tmp_path / "classes.txt").write_text("Circle\nsquare\n\n")
    cfg = load_config(None, ["data.dataset=voc_custom", "model.name=ssd_300_mobilenet0.25_custom",
                             f"data.root={tmp_path}", "data.classes=[classes.txt]"])
    assert dataset_classes(cfg) == ["circle", "square"]
    cfg = load_config(None, ["data.dataset=voc_custom", "model.name=ssd_300_mobilenet0.25_custom",
                             f"data.root={tmp_path}", "data.classes=[nope.txt]"])
    with pytest.raises(DataError, match="nope.txt"):
        dataset_classes(cfg)


def write_coco(root, images, boxes):
    import json
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


def test_val_loader_covers_every_image_once(tmp_path):
    for i in range(7):
        write_item(tmp_path, f"{i}", [obj("circle", (1, 1, 9 + i, 9))] * (i % 3), split="val")
    ds = custom(tmp_path, split="val")
    for batch_size in (1, 2, 3, 7, 10):
        seen, objects = 0, 0
        for images, labels, sizes in val_loader(ds, Preprocess(64, (0.5,) * 3, (0.25,) * 3),
                                                batch_size, 0):
            assert images.shape[1:] == (3, 64, 64) and labels.shape[2] == 6
            np.testing.assert_array_equal(sizes.asnumpy(), [[80, 60]] * images.shape[0])
            seen += images.shape[0]
            objects += int((labels[:, :, 4] >= 0).sum().asscalar())
        assert seen == 7 and objects == sum(i % 3 for i in range(7))


def test_split_batch_uses_only_as_many_contexts_as_samples():
    ctx = [mx.cpu(0), mx.cpu(1)]
    parts = split_batch([mx.nd.ones((1, 3)), mx.nd.ones((1, 2))], ctx)
    assert [p.context for p in parts[0]] == [mx.cpu(0)]
    parts = split_batch([mx.nd.ones((3, 3))], ctx)
    assert [p.shape[0] for p in parts[0]] == [2, 1]


def test_epoch_sampler_is_fixed_by_seed_and_epoch_and_resumes():
    s = EpochSampler(10, seed=3)
    first = list(s)
    assert sorted(i for _, i in first) == list(range(10))
    assert list(EpochSampler(10, seed=3)) == first
    s.set_epoch(1)
    second = list(s)
    assert second != first
    s.set_epoch(1, skip=4)
    assert list(s) == second[4:] and len(s) == 6


def test_sampler_shards_together_make_the_single_process_batches():
    """Batch k of 2 workers with batch B holds batch k of one process with batch 2B."""
    single = list(EpochSampler(11, seed=5))
    shards = [EpochSampler(11, seed=5, shard=r, num_shards=2) for r in (0, 1)]
    assert [len(s) for s in shards] == [5, 5]  # equal: every worker runs the same steps
    parts = [list(s) for s in shards]
    for k in range(2):  # per-worker batch 2
        joint = sorted(parts[0][2 * k: 2 * k + 2] + parts[1][2 * k: 2 * k + 2])
        assert joint == sorted(single[4 * k: 4 * k + 4])
    shards[1].set_epoch(0, skip=2)
    assert list(shards[1]) == parts[1][2:]


def test_train_loader_targets(tmp_path):
    from ssd_nobias.model.ssd import get_model, ssd_anchors
    for i in range(4):
        write_item(tmp_path, f"{i}", [obj("circle", (10, 10, 50, 40))], size=(120, 90))
    ds = custom(tmp_path)
    net = get_model("ssd_300_mobilenet0.25_custom", classes=CLASSES)
    net.initialize()
    anchors = ssd_anchors(net, 300, mx.cpu())
    loader = train_loader(ds, anchors, PREP_300, 2, 0, EpochSampler(4, 0))
    batches = list(loader)
    assert len(batches) == 2
    images, cls_t, box_t = batches[0]
    n = anchors.shape[1]
    assert images.shape == (2, 3, 300, 300) and cls_t.shape == (2, n) and box_t.shape == (2, n, 4)
    assert (cls_t.asnumpy() == 1).any()  # the circle (class 0) matches anchors: target id 1
    again = list(train_loader(ds, anchors, PREP_300, 2, 0, EpochSampler(4, 0)))
    np.testing.assert_array_equal(again[0][0].asnumpy(), images.asnumpy())  # seeded augmentation
    with pytest.raises(DataError, match="fewer than one batch"):
        train_loader(ds, anchors, PREP_300, 8, 0, EpochSampler(4, 0))


def yiq_hue(rgb):
    """Hue angle in degrees of RGB rows, in the YIQ plane GluonCV's hue jitter rotates."""
    i = rgb @ np.array([0.596, -0.274, -0.321])
    q = rgb @ np.array([0.211, -0.523, 0.311])
    return np.degrees(np.arctan2(q, i))


def test_train_transform_hue_jitter_is_18_degrees_not_any_hue():
    from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
    image = mx.nd.array(np.tile(np.array([200, 40, 30], np.uint8), (64, 64, 1)), dtype=np.uint8)
    label = np.array([[0, 0, 63, 63, 0]], np.float32)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def hue_shifts(transform):
        shifts = []
        for seed in range(40):
            np.random.seed(seed)
            random.seed(seed)
            out = transform(image, label)[0].asnumpy()
            rgb = (out.reshape(3, -1).mean(axis=1) * std[0] + mean[0]) * 255
            shifts.append((yiq_hue(rgb) - yiq_hue(np.array([200.0, 40, 30])) + 180) % 360 - 180)
        return np.abs(shifts)

    ours = hue_shifts(SSDTrainTransform(32, 32, mean=mean, std=std))
    assert ours.max() <= 18.5 and ours.max() > 5
    stock = hue_shifts(SSDDefaultTrainTransform(32, 32, mean=mean, std=std))
    assert stock.max() > 90  # GluonCV's default: any hue


def test_train_targets_decode_onto_the_augmented_boxes(tmp_path):
    from gluoncv.nn.coder import NormalizedBoxCenterDecoder
    from ssd_nobias.model.ssd import get_model, ssd_anchors
    write_item(tmp_path, "a", [obj("circle", (11, 11, 60, 50)), obj("square", (70, 20, 110, 80))],
               size=(120, 90))
    img, label = custom(tmp_path)[0]
    net = get_model("ssd_300_mobilenet0.25_custom", classes=CLASSES)
    net.initialize()
    anchors = ssd_anchors(net, 300, mx.cpu())
    decode = NormalizedBoxCenterDecoder(stds=(0.1, 0.1, 0.2, 0.2))
    mean, std = (0.5,) * 3, (0.25,) * 3
    for seed in range(6):
        np.random.seed(seed)
        random.seed(seed)
        _, boxes = SSDTrainTransform(300, 300, mean=mean, std=std)(img, label)
        np.random.seed(seed)
        random.seed(seed)
        _, cls_t, box_t = SSDTrainTransform(300, 300, anchors, mean=mean, std=std)(img, label)
        positive = cls_t.asnumpy() > 0
        decoded = decode(box_t.expand_dims(0), anchors)[0].asnumpy()[positive]
        classes = cls_t.asnumpy()[positive] - 1
        assert positive.sum() >= len(boxes)  # every box is matched
        for box, c in zip(decoded, classes):
            match = boxes[np.abs(boxes[:, :4] - box).max(axis=1) < 1e-2]
            assert len(match) == 1 and match[0, 4] == c


@pytest.mark.slow
def test_crop_sampler_keeps_the_ssd_rules_and_gluoncv_s_distribution():
    from gluoncv.data.transforms.experimental.bbox import (
        random_crop_with_constraints as gluoncv_crop)
    bbox = np.array([[30, 40, 90, 120, 1, 0], [150, 20, 190, 60, 0, 1]], np.float32)
    size = (200, 150)
    areas = {"ours": [], "gluoncv": []}
    for seed in range(600):
        np.random.seed(seed)
        random.seed(seed)
        boxes, (x, y, w, h) = random_crop_with_constraints(bbox, size)
        assert 0 <= x and 0 <= y and x + w <= size[0] and y + h <= size[1]
        assert len(boxes) >= 1 and boxes.shape[1] == 6
        assert (boxes[:, :4] >= 0).all() and (boxes[:, [0, 2]] <= w).all()
        assert (boxes[:, [1, 3]] <= h).all()
        if (w, h) != size:  # a sampled patch: scale and aspect limits hold
            assert 0.3 * 0.99 <= np.sqrt(w * h / (size[0] * size[1])) <= 1
            assert 0.5 * 0.95 <= (w / size[0]) / (h / size[1]) <= 2 * 1.05
        areas["ours"].append(w * h)
        np.random.seed(seed)
        random.seed(seed)
        areas["gluoncv"].append(np.prod(gluoncv_crop(bbox, size)[1][2:]))
    ours, theirs = np.mean(areas["ours"]), np.mean(areas["gluoncv"])
    assert abs(ours - theirs) < 0.06 * theirs  # means of 600 draws: about 2.5% noise each
    full = [a == size[0] * size[1] for a in areas["ours"]]
    assert 0.05 < np.mean(full) < 0.5  # the whole image is one candidate among several


def test_crop_sampler_without_boxes_keeps_the_image():
    boxes, crop = random_crop_with_constraints(np.zeros((0, 5), np.float32), (64, 48))
    assert crop == (0, 0, 64, 48) and boxes.shape == (0, 5)


@pytest.mark.parametrize("contrast", [0.25, 0.5, 2.0, 4.0])
def test_per_image_normalization_removes_contrast_around_the_mean(contrast):
    """data.normalize: per_image divides the normalized image by its RMS, a scalar: an image
    whose deviation from the mean is scaled by `contrast` gives the same tensor."""
    rng = np.random.RandomState(0)
    image = mx.nd.array(rng.randint(0, 256, (40, 50, 3)), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = ValTransform(Preprocess(32, mean, std))(image, np.zeros((0, 5)))[0]
    y = ValTransform(Preprocess(32, mean, std, per_image=True))(image, np.zeros((0, 5)))[0]
    assert float(mx.nd.mean(mx.nd.square(y)).asscalar()) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(y.asnumpy(), (x / np.sqrt((x.asnumpy() ** 2).mean())).asnumpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(per_image_normalize(x * contrast).asnumpy(), y.asnumpy(),
                               rtol=1e-5, atol=1e-6)
    flat = per_image_normalize(mx.nd.zeros((3, 4, 4)))  # an image that is the mean: no NaN
    assert not flat.asnumpy().any()


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


def test_check_dataset_finds_annotation_tool_coco_files(tmp_path):
    """check_dataset.py reads a file_name-only COCO set as the loader does."""
    from ssd_nobias.data.check import CLEAN, check_dataset
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
