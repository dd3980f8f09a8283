"""The network's input contract as one object: built from the config, written beside every
export as preprocess.json, read back by detection and evaluation of exported files; the val
transform (transforms.ValTransform) applies it."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence, Tuple

from ssd_nobias.atomic import write_json
from ssd_nobias.config import base_size, per_image
from ssd_nobias.errors import DataError

PREPROCESS_FILE = "preprocess.json"


@dataclass(frozen=True)
class Preprocess:
    """size x size RGB input, (pixel / 255 - mean) / std, then divided by its own RMS with
    `per_image` (data.normalize: per_image)."""

    size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    per_image: bool = False

    @classmethod
    def from_config(cls, cfg) -> "Preprocess":
        return cls(base_size(cfg), tuple(cfg.data.mean), tuple(cfg.data.std), per_image(cfg))

    def to_json(self, classes: Sequence[str]) -> dict:
        """preprocess.json: the input, its normalization in words and numbers, the classes."""
        return {
            "input": "data", "shape": [1, 3, self.size, self.size], "layout": "NCHW",
            "channel_order": "RGB", "scale": 1 / 255, "mean": list(self.mean),
            "std": list(self.std), "normalize": "per_image" if self.per_image else "dataset",
            "formula": "x = (pixel / 255 - mean) / std, per channel" + (
                "; then x / sqrt(mean(x^2)) over the whole image" if self.per_image else ""),
            "classes": list(classes),
            "outputs": ["ids", "scores", "boxes (x0, y0, x1, y1 in input pixels)"]}

    def save(self, folder: str, classes: Sequence[str]) -> str:
        path = os.path.join(folder, PREPROCESS_FILE)
        write_json(path, self.to_json(classes))
        return path

    @classmethod
    def load(cls, folder: str) -> "Preprocess":
        """The preprocess.json an export wrote in `folder`."""
        path = os.path.join(folder, PREPROCESS_FILE)
        try:
            with open(path) as f:
                spec = json.load(f)
            return cls(int(spec["shape"][-1]), tuple(spec["mean"]), tuple(spec["std"]),
                       spec.get("normalize", "dataset") == "per_image")
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise DataError(f"{path} (written by `ssd-nobias export`) is missing or unreadable: "
                            f"{err}") from None
