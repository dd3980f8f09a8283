"""Image files read whole or not at all: a truncated or corrupt file is an error naming it.

OpenCV (behind mx.image) decodes a JPEG cut short without an error: libjpeg prints a warning
and fills the missing rows with grey, so a half-copied file would train silently. Each format's
end is checked on the bytes already read for decoding (JPEG's end-of-image marker, PNG's IEND
chunk, BMP's declared file size), which costs nothing measurable next to the decode.
"""
from __future__ import annotations


import mxnet as mx

from .errors import DataError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


class ImageError(DataError):
    """An image file that is missing, truncated or cannot be decoded; the message names it."""


def incomplete_reason(data: bytes) -> str:
    """Why the encoded image `data` is cut short, or '' when it ends as its format says."""
    if data[:2] == b"\xff\xd8":
        # Some writers pad a JPEG after its end-of-image marker with zeros or a newline.
        if not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
            return "truncated JPEG: no end-of-image marker"
    elif data[:8] == _PNG_SIGNATURE:
        if not data.endswith(_PNG_END):
            return "truncated PNG: no IEND chunk at the end"
    elif data[:2] == b"BM" and len(data) >= 6:
        declared = int.from_bytes(data[2:6], "little")
        if declared and declared > len(data):
            return f"truncated BMP: its header says {declared} bytes"
    return ""


def read_image(path: str) -> mx.nd.NDArray:
    """Decode an image file fully as HxWx3 uint8 RGB (grayscale and PNG included)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageError(f"{path}: image file is missing") from None
    except OSError as err:
        raise ImageError(f"{path}: cannot read image ({err.strerror})") from None
    if not data:
        raise ImageError(f"{path}: cannot decode image (empty file, 0 bytes)")
    reason = incomplete_reason(data)
    if reason:
        raise ImageError(f"{path}: {reason} ({len(data)} bytes); a partial copy?")
    try:
        return mx.image.imdecode(data, 1)
    except mx.base.MXNetError:
        raise ImageError(f"{path}: cannot decode image (corrupt, {len(data)} bytes)") from None
