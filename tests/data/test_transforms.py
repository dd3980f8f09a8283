"""SSD's transforms: the hue jitter GluonCV means, targets that decode onto the augmented
boxes, the vectorized crop sampler against GluonCV's, per-image normalization."""
import random

import mxnet as mx
import numpy as np
import pytest

from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.transforms import (SSDTrainTransform, ValTransform, per_image_normalize,
                                        random_crop_with_constraints)
from tests.data_files import CLASSES, custom, obj, write_item


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
