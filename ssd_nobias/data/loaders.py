"""SSD's data loaders: seeded, resumable and shardable epochs whose augmentation and anchor
matching run in the workers, every val image once in order, and batches split over devices."""
from __future__ import annotations

import logging
import random
from typing import List, Sequence, Tuple

import mxnet as mx
import numpy as np
from gluoncv.data.batchify import Stack, Tuple as BTuple
from mxnet import gluon

from ssd_nobias.data.images import ImageError
from ssd_nobias.data.preprocess import Preprocess
from ssd_nobias.data.transforms import SSDTrainTransform, ValTransform
from ssd_nobias.errors import DataError

log = logging.getLogger(__name__)

BAD_IMAGE_POLICIES = ("error", "skip")


class EpochSampler(gluon.data.Sampler):
    """A shuffled epoch of (sample seed, index) pairs, fixed by (seed, epoch), resumable mid-way.

    The per-sample seed makes augmentation independent of worker count and scheduling. With
    `num_shards` > 1 (distributed training), shard `shard` gets every num_shards-th sample of
    the epoch's order, all shards the same length: batch k of each shard together make batch k
    of one process with num_shards times the batch.
    """

    def __init__(self, length: int, seed: int, shard: int = 0, num_shards: int = 1):
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} of {num_shards}")
        self._length, self._seed = length, seed
        self._shard, self._num_shards = shard, num_shards
        self._epoch, self._skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Draw epoch `epoch`'s order; leave out the shard's first `skip` samples (trained on)."""
        self._epoch, self._skip = epoch, skip

    def __iter__(self):
        rng = np.random.RandomState([self._seed, self._epoch])
        order = rng.permutation(self._length)
        seeds = rng.randint(0, 2 ** 31 - 1, size=self._length)
        pairs = list(zip(seeds.tolist(), order.tolist()))[self._shard::self._num_shards]
        return iter(pairs[:self.shard_length][self._skip:])

    @property
    def shard_length(self) -> int:
        return self._length // self._num_shards

    def __len__(self) -> int:
        return self.shard_length - self._skip


class SeededTransform(gluon.data.Dataset):
    """dataset[(seed, i)] -> transform(*dataset[i]) with Python's and NumPy's RNGs seeded.

    bad_images='skip': an image that cannot be read whole or disagrees with its annotation's
    size is replaced by the next good one, with a warning that names it and counts the skips of
    this loader process; 'error' (the default) raises the ImageError that names it.
    """

    def __init__(self, dataset, transform, bad_images: str = "error"):
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, not {bad_images!r}")
        self._dataset, self._transform = dataset, transform
        self._skip = bad_images == "skip"
        self.skipped = set()

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, key):
        seed, idx = key
        random.seed(seed)
        np.random.seed(seed)  # GluonCV's SSD augmentation draws from both
        return self._transform(*self._load(idx))

    def _load(self, idx: int):
        for k in range(len(self._dataset)):
            i = (idx + k) % len(self._dataset)
            if i in self.skipped:
                continue
            try:
                return self._dataset[i]
            except ImageError as err:
                if not self._skip:
                    raise
                self.skipped.add(i)
                log.warning("skipped a bad image (data.bad_images: skip), %d so far in this "
                            "loader process: %s", len(self.skipped), err)
        raise DataError(f"{self._dataset}: every image is bad ({len(self.skipped)} skipped)")


def train_loader(dataset, anchors: mx.nd.NDArray, preprocess: Preprocess, batch_size: int,
                 num_workers: int, sampler: EpochSampler, max_expand: float = 4.0,
                 bad_images: str = "error") -> gluon.data.DataLoader:
    """Batches of (image, class targets, box targets) in the sampler's order, last partial dropped.

    Augmentation (SSDTrainTransform) and anchor matching run in the workers; bad images raise
    or are skipped as SeededTransform says.
    """
    if len(dataset) < batch_size:
        raise DataError(f"{dataset} has {len(dataset)} training images, fewer than one batch "
                        f"of {batch_size}")
    size = preprocess.size
    transform = SSDTrainTransform(size, size, anchors.as_in_context(mx.cpu()), max_expand,
                                  preprocess.per_image, mean=tuple(preprocess.mean),
                                  std=tuple(preprocess.std))
    batches = gluon.data.BatchSampler(sampler, batch_size, last_batch="discard")
    return gluon.data.DataLoader(SeededTransform(dataset, transform, bad_images),
                                 batch_sampler=batches,
                                 batchify_fn=BTuple(Stack(), Stack(), Stack()),
                                 num_workers=num_workers)


def augmented_batch(dataset, preprocess: Preprocess, sampler: EpochSampler, batch_size: int,
                    max_expand: float = 4.0, bad_images: str = "error"
                    ) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The first batch of the sampler's epoch as the model gets it, before anchor matching:
    (the normalized image as uint8 RGB pixels again, its boxes (N, 5+) in them) per image. The
    same per-sample seeds give the same augmentation as train_loader's batch: the target
    generator draws no random number."""
    size = preprocess.size
    transform = SSDTrainTransform(size, size, None, max_expand, preprocess.per_image,
                                  mean=tuple(preprocess.mean), std=tuple(preprocess.std))
    seeded = SeededTransform(dataset, transform, bad_images)
    keys = list(sampler)[:batch_size]
    out = []
    for key in keys:
        image, boxes = seeded[key]
        out.append((to_pixels(image.asnumpy(), preprocess), np.asarray(boxes)))
    return out


def to_pixels(image: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """A normalized (3, H, W) image as uint8 (H, W, 3) RGB: the normalization undone, or for
    per-image normalization (not invertible) stretched to 0-255."""
    chw = image.astype(np.float64)
    if preprocess.per_image:
        low, high = chw.min(), chw.max()
        pixels = (chw - low) / max(high - low, 1e-12) * 255
    else:
        std, mean = np.asarray(preprocess.std), np.asarray(preprocess.mean)
        pixels = (chw * std[:, None, None] + mean[:, None, None]) * 255
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def pad_labels(labels: Sequence[np.ndarray]) -> mx.nd.NDArray:
    """Stack label arrays into (batch, max(1, most rows), columns), padding with -1."""
    rows = max([1] + [len(x) for x in labels])
    out = np.full((len(labels), rows, labels[0].shape[-1]), -1, dtype=np.float32)
    for i, x in enumerate(labels):
        out[i, :len(x)] = x
    return mx.nd.array(out, dtype=np.float32)


def val_loader(dataset, preprocess: Preprocess, batch_size: int, num_workers: int,
               transform=None) -> gluon.data.DataLoader:
    """Every image exactly once, in order: (images, padded labels, original (w, h)), made by
    ValTransform or by `transform` (the same outputs)."""
    transform = transform or ValTransform(preprocess)
    return gluon.data.DataLoader(dataset.transform(transform),
                                 batch_size, shuffle=False,
                                 batchify_fn=BTuple(Stack(), pad_labels, Stack()),
                                 last_batch="keep", num_workers=num_workers)


def split_batch(batch: Sequence[mx.nd.NDArray], ctx: Sequence[mx.Context]
                ) -> List[List[mx.nd.NDArray]]:
    """split_and_load each array over as many contexts as the batch has samples."""
    ctx = list(ctx)[: batch[0].shape[0]]
    return [gluon.utils.split_and_load(x, ctx, batch_axis=0, even_split=False) for x in batch]
