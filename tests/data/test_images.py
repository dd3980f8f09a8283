"""Image files are read whole or not at all: each format's truncation is caught by name, and
an image whose header claims more pixels than the limit is not decoded."""
import os

import cv2
import numpy as np
import pytest

from ssd_nobias.config import defaults
from ssd_nobias.data.images import (MAX_PIXELS, ImageError, header_size, incomplete_reason,
                                    read_image)
from tests.data_files import bomb_png


def encoded(ext):
    image = np.random.RandomState(0).randint(0, 255, (40, 50, 3)).astype(np.uint8)
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("ext, reason", [(".jpg", "truncated JPEG"), (".png", "truncated PNG"),
                                         (".bmp", "truncated BMP")])
def test_each_format_whole_reads_and_cut_short_is_named(tmp_path, ext, reason):
    data = encoded(ext)
    assert incomplete_reason(data[:8], data[-1024:], len(data)) == ""
    whole = tmp_path / f"whole{ext}"
    whole.write_bytes(data)
    assert read_image(str(whole)).shape == (40, 50, 3)
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageError, match=rf"cut\{ext}: {reason}.*\({len(data) * 2 // 3} bytes\)"):
        read_image(str(cut))


def test_jpeg_padding_after_its_end_marker_is_accepted(tmp_path):
    path = tmp_path / "padded.jpg"
    path.write_bytes(encoded(".jpg") + b"\x00" * 7 + b"\n")
    assert read_image(str(path)).shape == (40, 50, 3)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match=r"nothere\.jpg: image file is missing"):
        read_image(str(tmp_path / "nothere.jpg"))


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp"])
def test_the_header_gives_the_size_without_decoding(tmp_path, ext):
    path = str(tmp_path / f"a{ext}")
    cv2.imwrite(path, np.zeros((37, 53, 3), np.uint8))
    with open(path, "rb") as f:
        assert header_size(f) == (53, 37)
    assert read_image(path, max_pixels=53 * 37).shape == (37, 53, 3)
    with pytest.raises(ImageError, match=r"53x37, 0 megapixels, over the limit of 0.00196"):
        read_image(path, max_pixels=53 * 37 - 1)


def test_a_header_bomb_is_an_unreadable_image_named_before_any_decoding(tmp_path):
    path = bomb_png(tmp_path / "bomb.png")
    assert os.path.getsize(path) < 100
    with pytest.raises(ImageError, match=r"bomb.png: its header says 40000x40000, 1600 "
                                         r"megapixels, over the limit of 100 \(data.max_pixels"):
        read_image(path)
    assert MAX_PIXELS == defaults().data.max_pixels
