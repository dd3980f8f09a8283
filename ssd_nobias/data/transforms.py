"""SSD's image transforms: GluonCV's training augmentation (its hue jitter corrected, its crop
sampler vectorized) with the anchors' targets, and the val resize whose inverse maps boxes back."""
from __future__ import annotations

from typing import Tuple

import mxnet as mx
import numpy as np
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import experimental
from gluoncv.data.transforms import image as timage
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform
from gluoncv.utils.bbox import bbox_iou

from ssd_nobias.data.preprocess import Preprocess


# GluonCV's random_color_distort rotates hue by `hue_delta * pi` radians, so its default of 18
# (meant as the SSD recipe's +-18 degrees) gives any hue at all, to half of the training images.
# In its units, +-18 degrees is 0.1.
HUE_DELTA = 18 / 180


# The SSD paper's patch sampler: the whole image, or a crop whose IoU with every object is at
# least each of these minimums (or, last, at most 1), one of the candidates picked at random.
CROP_CONSTRAINTS = ((0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None), (None, 1.0))


def random_crop_with_constraints(bbox: np.ndarray, size: Tuple[int, int],
                                 min_scale: float = 0.3, max_scale: float = 1.0,
                                 max_aspect_ratio: float = 2.0, max_trial: int = 50
                                 ) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """GluonCV's `experimental.bbox.random_crop_with_constraints`, its trials drawn at once.

    Same rules and arguments; GluonCV tests up to 50 crops per constraint one at a time in
    Python, which is half of the loader's time per image on a CPU. Returns the boxes clipped
    to the crop (those whose centre falls outside it dropped) and the crop (x, y, w, h).
    """
    w, h = size
    candidates = [(0, 0, w, h)]
    if len(bbox):
        for min_iou, max_iou in CROP_CONSTRAINTS:
            scale = np.random.uniform(min_scale, max_scale, max_trial)
            aspect = np.random.uniform(np.maximum(1 / max_aspect_ratio, scale ** 2),
                                       np.minimum(max_aspect_ratio, 1 / scale ** 2))
            crop_h = np.minimum((h * scale / np.sqrt(aspect)).astype(int), h)
            crop_w = np.minimum((w * scale * np.sqrt(aspect)).astype(int), w)
            top = (np.random.uniform(0, 1, max_trial) * (h - crop_h)).astype(int)
            left = (np.random.uniform(0, 1, max_trial) * (w - crop_w)).astype(int)
            crops = np.stack([left, top, left + crop_w, top + crop_h], axis=1)
            iou = bbox_iou(bbox[:, :4], crops)
            ok = ((iou.min(axis=0) >= (min_iou if min_iou is not None else -np.inf)) &
                  (iou.max(axis=0) <= (max_iou if max_iou is not None else np.inf)))
            if ok.any():
                k = int(np.argmax(ok))
                candidates.append((int(left[k]), int(top[k]), int(crop_w[k]), int(crop_h[k])))
    while candidates:
        crop = candidates.pop(np.random.randint(0, len(candidates)))
        cropped = tbbox.crop(bbox, crop, allow_outside_center=False)
        if cropped.size:
            return cropped, crop
    return bbox, (0, 0, w, h)


def per_image_normalize(x: mx.nd.NDArray) -> mx.nd.NDArray:
    """A normalized (3, H, W) image divided by its own RMS: a scalar, no additive term, so an
    image whose contrast around the mean is scaled by a gives the same tensor."""
    rms = mx.nd.sqrt(mx.nd.mean(mx.nd.square(x)))
    return x / mx.nd.maximum(rms, 1e-6)


class SSDTrainTransform(SSDDefaultTrainTransform):
    """GluonCV's SSD training augmentation, step for step, with the hue jitter it intends and
    a vectorized crop sampler.

    Colour distortion, random expansion (p 0.5), IoU-constrained random crop, resize with a
    random interpolation, horizontal flip, normalization, then the anchors' training targets.
    """

    def __init__(self, width: int, height: int, anchors=None, max_expand: float = 4.0,
                 per_image: bool = False, **kwargs):
        super().__init__(width, height, anchors, **kwargs)
        self._max_expand = max_expand
        self._per_image = per_image

    def __call__(self, src, label):
        img = experimental.image.random_color_distort(src, hue_delta=HUE_DELTA)
        if self._max_expand > 1 and np.random.uniform(0, 1) > 0.5:
            img, expand = timage.random_expand(img, max_ratio=self._max_expand,
                                               fill=[m * 255 for m in self._mean])
            bbox = tbbox.translate(label, x_offset=expand[0], y_offset=expand[1])
        else:
            bbox = label
        h, w, _ = img.shape
        bbox, (x0, y0, w, h) = random_crop_with_constraints(bbox, (w, h))
        img = mx.image.fixed_crop(img, x0, y0, w, h)
        img = timage.imresize(img, self._width, self._height, interp=np.random.randint(0, 5))
        bbox = tbbox.resize(bbox, (w, h), (self._width, self._height))
        img, flips = timage.random_flip(img, px=0.5)
        bbox = tbbox.flip(bbox, (self._width, self._height), flip_x=flips[0])
        img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=self._mean, std=self._std)
        if self._per_image:
            img = per_image_normalize(img)
        if self._anchors is None:
            return img, bbox.astype(img.dtype)
        cls_targets, box_targets, _ = self._target_generator(
            self._anchors, None, mx.nd.array(bbox[np.newaxis, :, :4]),
            mx.nd.array(bbox[np.newaxis, :, 4:5]))
        return img, cls_targets[0], box_targets[0]


class ValTransform:
    """Resize to the network input and normalize as `preprocess` says; keep the label in
    original pixels."""

    def __init__(self, preprocess: Preprocess):
        self._size = (preprocess.size, preprocess.size)
        self._mean, self._std = tuple(preprocess.mean), tuple(preprocess.std)
        self._per_image = preprocess.per_image

    def __call__(self, src, label):
        h, w = src.shape[:2]
        img = timage.imresize(src, *self._size, interp=9)
        img = mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean=self._mean, std=self._std)
        if self._per_image:
            img = per_image_normalize(img)
        return img, label.astype(np.float32), np.array([w, h], dtype=np.float32)


def boxes_to_image(boxes: np.ndarray, width: float, height: float, size: int) -> np.ndarray:
    """Boxes predicted on ValTransform's size x size input, in the original image's pixels
    (clipped to it): the inverse of its resize."""
    scale = np.array([width, height, width, height], dtype=np.float32) / size
    return np.clip(boxes * scale, 0, np.array([width, height, width, height], np.float32))
