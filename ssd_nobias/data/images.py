"""Image files read whole or not at all: a truncated or corrupt file is an error naming it, and
so is an image whose size disagrees with its annotation.

OpenCV (behind mx.image) decodes a JPEG cut short without an error: libjpeg prints a warning
and fills the missing rows with grey, so a half-copied file would train silently. Before
decoding, each format's end is checked on the file's first and last bytes (JPEG's end-of-image
marker, PNG's IEND chunk, BMP's declared file size): one small read next to the decode.
"""
from __future__ import annotations

import os
from typing import Tuple

import mxnet as mx

from ssd_nobias.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


class ImageError(DataError):
    """An image file that is missing, truncated or cannot be decoded; the message names it."""


def incomplete_reason(head: bytes, tail: bytes, size: int) -> str:
    """Why an encoded image of `size` bytes, starting with `head` (8 bytes or more) and ending
    with `tail`, is cut short; '' when it ends as its format says."""
    if head[:2] == b"\xff\xd8":
        # Some writers pad a JPEG after its end-of-image marker with zeros or a newline.
        if not tail.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
            return "truncated JPEG: no end-of-image marker"
    elif head[:8] == _PNG_SIGNATURE:
        if not tail.endswith(_PNG_END):
            return "truncated PNG: no IEND chunk at the end"
    elif head[:2] == b"BM" and len(head) >= 6:
        declared = int.from_bytes(head[2:6], "little")
        if declared and declared > size:
            return f"truncated BMP: its header says {declared} bytes"
    return ""


_TAIL = 1024  # room for padding after a JPEG's end marker


def read_image(path: str) -> mx.nd.NDArray:
    """Decode an image file fully as HxWx3 uint8 RGB (grayscale and PNG included)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            f.seek(max(0, size - _TAIL))
            tail = f.read()
    except FileNotFoundError:
        raise ImageError(f"{path}: image file is missing") from None
    except OSError as err:
        raise ImageError(f"{path}: cannot read image ({err.strerror})") from None
    if not size:
        raise ImageError(f"{path}: cannot decode image (empty file, 0 bytes)")
    reason = incomplete_reason(head, tail, size)
    if reason:
        raise ImageError(f"{path}: {reason} ({size} bytes); a partial copy?")
    try:
        return mx.image.imread(path, 1)
    except mx.base.MXNetError:
        raise ImageError(f"{path}: cannot decode image (corrupt, {size} bytes)") from None


def size_mismatch(image, size: Tuple[float, float], source: str, image_path: str) -> str:
    """A message naming both files and sizes if the decoded image is not `size` (as annotated
    in `source`: "<file>: <size>" or "<file>: image <id>"), else ''."""
    h, w = image.shape[:2]
    if (float(w), float(h)) == tuple(size):
        return ""
    return (f"{source} says {size[0]:g}x{size[1]:g} (width x height) but {image_path} is "
            f"{w}x{h}; its boxes would be clipped and scaled to the wrong size")
