"""Box arithmetic the dataset loaders share."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np


def clip_box(box: Sequence[float], width: float, height: float) -> Tuple[float, ...]:
    """A box clipped to the image; empty (xmin >= xmax or ymin >= ymax) if it was inverted,
    empty or wholly outside."""
    xmin, xmax = np.clip([box[0], box[2]], 0, width)
    ymin, ymax = np.clip([box[1], box[3]], 0, height)
    return float(xmin), float(ymin), float(xmax), float(ymax)
