"""Image files read whole or not at all: a truncated or corrupt file is an error naming it, and
so is an image whose size disagrees with its annotation.

OpenCV (behind mx.image) decodes a JPEG cut short without an error: libjpeg prints a warning
and fills the missing rows with grey, so a half-copied file would train silently. Before
decoding, each format's end is checked on the file's first and last bytes (JPEG's end-of-image
marker, PNG's IEND chunk, BMP's declared file size): one small read next to the decode.

An image's pixel count is read from its header first: a 69-byte PNG can claim 40000 x 40000,
and decoding it would take gigabytes. Over `max_pixels` (data.max_pixels, detect's
--max-pixels) is an ImageError like a broken file, so bad_images=skip / --skip-bad skip it.
"""
from __future__ import annotations

import os
import struct
from typing import Optional, Tuple

import mxnet as mx

from ssd_nobias.config import MAX_PIXELS  # the readers' default, data.max_pixels'
from ssd_nobias.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")  # what datasets, detect and export read


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
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(f) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG, JPEG or BMP file's header, read from the open binary file
    `f` without decoding; None for another format or a header that does not say."""
    f.seek(0)
    head = f.read(26)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:2] == b"BM" and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)
    if head[:2] != b"\xff\xd8":
        return None
    f.seek(2)
    while True:  # JPEG: walk the segments to the first start-of-frame
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:
            continue  # segments without a length
        length = f.read(2)
        if len(length) < 2:
            return None
        if marker[1] in _SOF:
            frame = f.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        f.seek(struct.unpack(">H", length)[0] - 2, os.SEEK_CUR)


def too_large(path: str, size: Optional[Tuple[int, int]], max_pixels: int) -> str:
    """Why an image whose header says `size` may not be decoded, or ''."""
    if size is None or size[0] * size[1] <= max_pixels:
        return ""
    return (f"{path}: its header says {size[0]}x{size[1]}, {size[0] * size[1] / 1e6:.0f} "
            f"megapixels, over the limit of {max_pixels / 1e6:g} (data.max_pixels, detect's "
            f"--max-pixels); not decoded")


def read_image(path: str, max_pixels: int = MAX_PIXELS) -> mx.nd.NDArray:
    """Decode an image file fully as HxWx3 uint8 RGB (grayscale and PNG included), unless its
    header says it holds more than `max_pixels`."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            dims = header_size(f) if size else None
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
    reason = too_large(path, dims, max_pixels)
    if reason:
        raise ImageError(reason)
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
