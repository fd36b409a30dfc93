"""Decoding real encoded files of every supported mode, and every way a file can be broken."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_app.data.image_io import (
    IMAGE_EXTENSIONS,
    content_hash,
    decode_image,
    encode_image,
    encode_png,
    file_hash,
    is_image_path,
    read_image,
    read_image_and_hash,
    write_image,
)
from inspect_app.errors import ImageDecodeError


def _encode(ext: str, pixels: np.ndarray, params: list[int] | None = None) -> bytes:
    """Encode with OpenCV directly (BGR order), independent of the module under test."""
    ok, buf = cv2.imencode(ext, pixels, params or [])
    assert ok
    return buf.tobytes()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _grey_alpha_png(grey: int, alpha: int, width: int = 5, height: int = 4) -> bytes:
    """A PNG of colour type 4 (grey + alpha), which OpenCV cannot write, built by hand."""
    rows = b"".join(b"\x00" + bytes([grey, alpha]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 4, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def _textured(h: int = 64, w: int = 80) -> np.ndarray:
    """A BGR image with enough detail that its JPEG is several kilobytes."""
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_extensions_are_lower_case_and_checked_case_insensitively() -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"} == set(IMAGE_EXTENSIONS)
    assert is_image_path("a/B.JPG") and is_image_path("x.TiFf")
    assert not is_image_path("notes.txt") and not is_image_path("jpg")


def test_grey_png_becomes_three_equal_channels(tmp_path: Path) -> None:
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    rgb = read_image(_write(tmp_path, "g.png", _encode(".png", grey)))
    assert rgb.shape == (12, 10, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], grey)


def test_16bit_png_scales_by_257_without_clipping(tmp_path: Path) -> None:
    values = np.array([[0, 257, 1000, 32896], [40000, 65278, 65534, 65535]], dtype=np.uint16)
    rgb = read_image(_write(tmp_path, "deep.png", _encode(".png", values)))
    expected = np.array([[0, 1, 4, 128], [156, 254, 255, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(rgb[:, :, 0], expected)
    np.testing.assert_array_equal(rgb[:, :, 2], expected)


def test_16bit_colour_tiff_keeps_order_and_scale() -> None:
    bgr = np.zeros((3, 4, 3), np.uint16)
    bgr[..., 2] = 65535  # red in OpenCV's BGR order
    bgr[..., 1] = 257 * 100
    rgb = decode_image(_encode(".tif", bgr), name="deep.tif")
    assert tuple(rgb[0, 0]) == (255, 100, 0)


def test_rgba_png_is_composited_onto_black() -> None:
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[..., :3] = (40, 80, 200)  # B, G, R
    bgra[0, :, 3] = 255
    bgra[1, 0, 3] = 0
    bgra[1, 1, 3] = 128
    bgra[1, 2, 3] = 255
    rgb = decode_image(_encode(".png", bgra), name="alpha.png")
    assert tuple(rgb[0, 0]) == (200, 80, 40)
    assert tuple(rgb[1, 0]) == (0, 0, 0)
    assert tuple(rgb[1, 1]) == (100, 40, 20)  # half transparent: half the colour, rounded
    assert tuple(rgb[1, 2]) == (200, 80, 40)


def test_grey_alpha_png_is_composited_onto_black() -> None:
    rgb = decode_image(_grey_alpha_png(grey=200, alpha=128), name="ga.png")
    assert rgb.shape == (4, 5, 3)
    assert tuple(rgb[0, 0]) == (100, 100, 100)


def test_red_jpeg_comes_back_red(tmp_path: Path) -> None:
    bgr = np.zeros((32, 32, 3), np.uint8)
    bgr[..., 2] = 255
    rgb = read_image(_write(tmp_path, "red.jpg", _encode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])))
    r, g, b = (int(v) for v in rgb[16, 16])
    assert r >= 250 and g <= 5 and b <= 5


@pytest.mark.parametrize("ext", [".bmp", ".tif", ".tiff", ".png"])
def test_lossless_formats_round_trip_exactly(tmp_path: Path, ext: str) -> None:
    bgr = _textured(20, 30)
    rgb = read_image(_write(tmp_path, f"x{ext}", _encode(ext, bgr)))
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])


def test_float_tiff_is_clipped_to_unit_range() -> None:
    values = np.array([[-0.5, 0.0, 0.5, 1.0, 2.0]], dtype=np.float32)
    rgb = decode_image(_encode(".tif", values), name="f.tif")
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 0, 128, 255, 255])


def test_empty_file_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "empty.jpg", b"")
    with pytest.raises(ImageDecodeError, match="empty") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_garbage_bytes_are_not_an_image(tmp_path: Path) -> None:
    path = _write(tmp_path, "garbage.png", b"this is a text file, not a picture\n" * 4)
    with pytest.raises(ImageDecodeError, match="not an image") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_truncated_jpeg_is_reported_as_truncated(tmp_path: Path) -> None:
    data = _encode(".jpg", _textured())
    path = _write(tmp_path, "half.jpg", data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="truncated JPEG") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_truncated_png_is_reported_as_truncated(tmp_path: Path) -> None:
    data = _encode(".png", _textured())
    path = _write(tmp_path, "half.png", data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="truncated PNG") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_truncated_bmp_is_reported_as_truncated() -> None:
    data = _encode(".bmp", _textured())
    with pytest.raises(ImageDecodeError, match=r"cut\.bmp: truncated BMP"):
        decode_image(data[: len(data) // 2], name="cut.bmp")


def test_corrupt_jpeg_body_is_an_error() -> None:
    data = bytearray(_encode(".jpg", _textured()))
    data[2:40] = b"\x00" * 38  # smash the segment headers, keep the start and end markers
    with pytest.raises(ImageDecodeError, match=r"bad\.jpg"):
        decode_image(bytes(data), name="bad.jpg")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
def test_too_large_names_size_and_limit(tmp_path: Path, ext: str) -> None:
    path = _write(tmp_path, f"big{ext}", _encode(ext, _textured(40, 50)))
    with pytest.raises(ImageDecodeError, match=r"50 x 40 = 2000 pixels exceeds max_pixels 1999") as err:
        read_image(path, max_pixels=1999)
    assert str(path) in str(err.value)
    assert read_image(path, max_pixels=2000).shape == (40, 50, 3)


def test_missing_file_is_a_decode_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "gone.jpg"
    with pytest.raises(ImageDecodeError, match="not found") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_directory_is_a_decode_error(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="directory"):
        read_image(tmp_path)


def test_unsupported_sample_type_is_named() -> None:
    signed = np.full((4, 4), -5, dtype=np.int16)
    data = _encode(".tif", signed)
    with pytest.raises(ImageDecodeError, match=r"s16\.tif: .*int16"):
        decode_image(data, name="s16.tif")


def test_hashes_match_hashlib(tmp_path: Path) -> None:
    data = _encode(".png", _textured())
    path = _write(tmp_path, "h.png", data)
    expected = hashlib.sha256(data).hexdigest()
    assert content_hash(data) == expected
    assert file_hash(path) == expected
    image, digest = read_image_and_hash(path)
    assert digest == expected and image.shape == (64, 80, 3)


def test_write_image_keeps_rgb_order_on_disk(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255  # red
    for ext in (".png", ".bmp", ".tif", ".jpg"):
        path = write_image(tmp_path / "sub" / f"red{ext}", rgb)
        on_disk = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR
        assert on_disk[4, 4, 2] >= 250 and on_disk[4, 4, 0] <= 5, ext
        assert read_image(path)[4, 4, 0] >= 250
    assert not list((tmp_path / "sub").glob(".*"))  # no temporary files left behind


def test_encode_png_round_trips_rgb_and_grey() -> None:
    rgb = _textured(10, 12)
    np.testing.assert_array_equal(decode_image(encode_png(rgb)), rgb)
    grey = rgb[:, :, 0].copy()
    np.testing.assert_array_equal(decode_image(encode_png(grey))[:, :, 1], grey)


def test_encode_rejects_bad_arrays_and_extensions() -> None:
    with pytest.raises(ValueError, match="float32"):
        encode_png(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(4, 4, 2\)"):
        encode_png(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match=r"'\.gif'"):
        encode_image(np.zeros((4, 4, 3), np.uint8), ".gif")
