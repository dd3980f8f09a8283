"""The images an export reads: parity checks and INT8 calibration from the dataset when it is
on this machine, else from images the user names; parity from seeded noise when there are
none, so that a checkpoint exports on a machine that has only the checkpoint."""
from __future__ import annotations

import glob
import os
from typing import List, Optional, Tuple, Union

import mxnet as mx
import numpy as np

from ssd_nobias.data.datasets import build_dataset
from ssd_nobias.data.images import IMAGE_EXTS, read_image
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.transforms import ValTransform
from ssd_nobias.errors import DataError

PARITY_IMAGES = 8


def dataset_present(cfg) -> bool:
    """Whether the config's dataset folder (data.root) is on this machine. A folder that is
    there but broken still raises when read: only an absent dataset is worked around."""
    return os.path.isdir(cfg.data.root)


def image_files(spec: str) -> List[str]:
    """The images a folder holds (sorted), a glob matches, or the one file named.

    Raises:
        DataError naming `spec` when it names no image.
    """
    if os.path.isdir(spec):
        found = [os.path.join(spec, n) for n in sorted(os.listdir(spec))]
    elif os.path.isfile(spec):
        found = [spec]
    else:
        found = sorted(glob.glob(spec)) if glob.has_magic(spec) else []
    found = [p for p in found if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTS)]
    if not found:
        raise DataError(f"'{spec}' names no image ({', '.join(IMAGE_EXTS)}): give a folder of "
                        f"images, a glob such as 'photos/*.jpg' or an image file")
    return found


def load_images(paths: List[str], preprocess: Preprocess) -> List[np.ndarray]:
    """Each image file resized and normalized as for inference, (3, size, size) float32."""
    transform = ValTransform(preprocess)
    return [transform(read_image(p), np.zeros((0, 6)))[0].asnumpy() for p in paths]


def parity_images(dataset, preprocess: Preprocess, count: int = PARITY_IMAGES
                  ) -> mx.nd.NDArray:
    """Up to `count` val images as a normalized (N, 3, size, size) batch."""
    transform = ValTransform(preprocess)
    return mx.nd.stack(*[transform(*dataset[i])[0] for i in range(min(count, len(dataset)))])


def parity_inputs(cfg, sample_images: Optional[str] = None,
                  count: int = PARITY_IMAGES) -> Tuple[mx.nd.NDArray, str]:
    """A normalized (N, 3, size, size) batch the exported graphs are checked on, and what it
    is: `sample_images` (a folder, glob or file) if given, else the val split's first images
    if the dataset is here, else `count` seeded noise images (parity of the arithmetic only).

    Returns:
        (batch, a line saying where its images came from).
    """
    preprocess = Preprocess.from_config(cfg)
    if sample_images:
        paths = image_files(sample_images)[:count]
        images, source = load_images(paths, preprocess), f"{len(paths)} images of {sample_images}"
    elif dataset_present(cfg):
        images = list(parity_images(build_dataset(cfg, "val"), preprocess, count).asnumpy())
        source = f"{len(images)} val images of {cfg.data.root}"
    else:
        rng = np.random.RandomState(0)
        pixels = [mx.nd.array(rng.randint(0, 256, (preprocess.size, preprocess.size, 3)),
                              dtype=np.uint8) for _ in range(count)]
        transform = ValTransform(preprocess)
        images = [transform(p, np.zeros((0, 6)))[0].asnumpy() for p in pixels]
        source = (f"{count} noise images (no dataset at {cfg.data.root} and no sample images): "
                  f"the arithmetic is checked, not the detections")
    if len(images) < 2:  # the graphs' raw outputs are told from their anchors by batch size
        images = images * 2
    return mx.nd.array(np.stack(images)), source


def check_calibration(cfg, source: Union[int, str]) -> None:
    """Raise DataError now, before any export work, if `source` is a count of training images
    and the dataset is not on this machine."""
    if isinstance(source, int) and not dataset_present(cfg):
        raise DataError(f"INT8 calibration reads {source} training images, and the dataset "
                        f"(data.root {cfg.data.root}) is not on this machine: give "
                        f"--calib-images a folder or glob of images like those the model "
                        f"will see")


def calibration_inputs(cfg, source: Union[int, str], seed: int = 0
                       ) -> Tuple[List[np.ndarray], dict]:
    """INT8 calibration images, normalized for inference, and what they are: `source` training
    images (a seeded draw) when it is a count, else the images a folder or glob names.

    Raises:
        DataError when a count is asked for and the dataset is not on this machine.
    """
    preprocess = Preprocess.from_config(cfg)
    if isinstance(source, str) and not source.isdigit():
        paths = image_files(source)
        return load_images(paths, preprocess), {"images": len(paths), "source": source}
    count = int(source)
    check_calibration(cfg, count)
    dataset = build_dataset(cfg, "train")
    transform = ValTransform(preprocess)
    order = np.random.RandomState(seed).permutation(len(dataset))[:count]
    images = [transform(*dataset[int(i)])[0].asnumpy() for i in order]
    return images, {"images": len(images), "split": "train"}
