"""Image files are read whole or not at all: each format's truncation is caught by name."""
import cv2
import numpy as np
import pytest

from ssd_nobias.data.images import ImageError, incomplete_reason, read_image


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
