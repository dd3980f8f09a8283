"""Run tracking in TensorBoard: the rows metrics.csv gets, as scalars by iteration, and the
detections picture of each validation, written with tensorboardX (no TensorFlow or PyTorch)."""
from __future__ import annotations

import os
from typing import Mapping, Optional

import numpy as np

from ssd_nobias.errors import require

# metrics.csv column -> TensorBoard tag
TAGS = {"loss": "loss/total", "cls_loss": "loss/class", "box_loss": "loss/box",
        "lr": "train/lr", "images_per_s": "train/images_per_s", "val_map": "val/{metric}"}


class TensorBoardSink:
    """Event files under `log_dir`; a resumed run drops what was logged past its checkpoint,
    as metrics.csv does."""

    def __init__(self, log_dir: str, resume_iteration: int, metric: str):
        require("tensorboardX", extra="tracking", what="train.tensorboard")
        from tensorboardX import SummaryWriter

        self.metric = metric
        # one file per start: a resume within the same second must not overwrite the last
        self.writer = SummaryWriter(log_dir, purge_step=resume_iteration + 1
                                    if resume_iteration else None, flush_secs=30,
                                    filename_suffix=f".{os.getpid()}.{resume_iteration}")

    def add_row(self, row: Mapping[str, Optional[float]]) -> None:
        """One metrics.csv row (values or None), at its iteration."""
        step = int(row["iteration"])
        for key, tag in TAGS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag.format(metric=self.metric), float(row[key]), step)

    def add_picture(self, tag: str, image: np.ndarray, step: int) -> None:
        """An HxWx3 RGB uint8 picture."""
        self.writer.add_image(tag, image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
