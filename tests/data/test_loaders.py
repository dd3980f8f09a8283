"""The loaders: every val image once, seeded and resumable training epochs split into shards,
anchor targets in the batches, and a bad image stopping training or skipped as configured."""
import logging

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.data.images import ImageError
from ssd_nobias.data.loaders import (EpochSampler, augmented_batch, split_batch, to_pixels,
                                     train_loader, val_loader)
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.errors import DataError
from tests.data_files import CLASSES, bomb_png, custom, obj, write_item

PREP_64 = Preprocess(64, (0.5,) * 3, (0.25,) * 3)


PREP_300 = Preprocess(300, (0.5,) * 3, (0.25,) * 3)


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


def test_the_pictured_first_batch_is_the_batch_the_model_trains_on(tmp_path):
    """augmented_batch redraws the first batch with the same seeds: its pixels are the
    loader's images with the normalization undone, and its boxes are the ones that became the
    batch's anchor targets."""
    from ssd_nobias.model.ssd import get_model, ssd_anchors
    for i in range(4):
        write_item(tmp_path, f"{i}", [obj("circle", (10, 10, 50, 40)),
                                      obj("square", (60, 30, 110, 80))], size=(120, 90))
    ds = custom(tmp_path)
    net = get_model("ssd_300_mobilenet0.25_custom", classes=CLASSES)
    net.initialize()
    anchors = ssd_anchors(net, 300, mx.cpu())
    images, cls_t, _ = next(iter(train_loader(ds, anchors, PREP_300, 2, 0, EpochSampler(4, 7))))
    pictured = augmented_batch(ds, PREP_300, EpochSampler(4, 7), 2)
    assert len(pictured) == 2
    for k, (pixels, boxes) in enumerate(pictured):
        assert pixels.dtype == np.uint8 and pixels.shape == (300, 300, 3)
        np.testing.assert_array_equal(pixels, to_pixels(images[k].asnumpy(), PREP_300))
        # every class with a box left after the crop has anchors matched to it, and no other
        assert set(boxes[:, 4].astype(int) + 1) == set(np.unique(cls_t[k].asnumpy())) - {0}
    normalized = (np.arange(12, dtype=np.float64).reshape(3, 2, 2) / 11 - 0.5) / 0.25
    np.testing.assert_array_equal(to_pixels(normalized, PREP_300)[0, 1],
                                  np.rint(np.array([1, 5, 9]) / 11 * 255))


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


def test_an_image_whose_header_claims_gigapixels_is_skipped_like_a_broken_one(tmp_path,
                                                                             caplog):
    for i in range(4):
        write_item(tmp_path, f"im{i}", [obj("circle", (10, 10, 40, 40))])
    bomb_png(tmp_path / "JPEGImages" / "im2.jpg")
    anchors = mx.nd.array(np.random.RandomState(0).uniform(0, 1, (1, 50, 4)))
    loader = train_loader(custom(tmp_path), anchors, PREP_64, 4, 0, EpochSampler(4, 0),
                          max_expand=1, bad_images="skip")
    with caplog.at_level(logging.WARNING):
        assert [b[0].shape[0] for b in loader] == [4]
    assert any("im2.jpg: its header says 40000x40000" in r.getMessage() for r in caplog.records)
