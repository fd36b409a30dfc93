"""Image decoding and encoding: any supported file becomes an HxWx3 uint8 RGB array, or an ImageDecodeError.

Conversion rules (what the rest of the package can rely on):

* grey (8 or 16 bit) is replicated to three channels;
* colour comes back in RGB order (OpenCV's BGR is swapped here and nowhere else);
* alpha is composited onto black, i.e. ``rgb * alpha / 255``: a transparent pixel shows nothing, like a cut-out
  part photographed on a dark backdrop;
* 16-bit samples are scaled to 8 bit by ``/257`` (rounded), so 65535 → 255 and the full range is kept, never clipped;
* floating-point samples (float TIFF) are read as 0..1 intensities and clipped to that range (NaN → 0). A fixed
  mapping, unlike per-image min/max stretching, keeps a dark part dark and a bright defect bright;
* pixels are returned as stored: EXIF orientation is ignored, which suits fixed inspection cameras.

Every error names the file (or the ``name`` given for raw bytes) and the reason.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from pathlib import Path

import cv2
import numpy as np

from inspect_app.errors import ImageDecodeError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
"""Lower-case file suffixes treated as images; compare with ``suffix.lower()``."""

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_JPEG_QUALITY = 95

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"  # IEND chunk type + its fixed CRC: the last 8 bytes of every complete PNG
_JPEG_SOI = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"
# JPEG start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_HASH_CHUNK = 1 << 20


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name has one of ``IMAGE_EXTENSIONS`` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _sniff_format(data: bytes) -> str | None:
    """Container format from the magic bytes, or None when unknown (OpenCV may still read it)."""
    if data.startswith(_JPEG_SOI):
        return "JPEG"
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first JPEG start-of-frame segment, without decoding any pixels."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length field
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan came before any frame header
            return None
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker in _JPEG_SOF_MARKERS:
            if i + 9 > n:
                return None
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height
        i += 2 + length
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first TIFF directory (classic TIFF only)."""
    if len(data) < 8:
        return None
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        return None
    (count,) = struct.unpack_from(order + "H", data, ifd)
    dims: dict[int, int] = {}
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(data):
            break
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            if kind == 3:  # SHORT: left-aligned in the 4-byte value field
                (dims[tag],) = struct.unpack_from(order + "H", data, entry + 8)
            elif kind == 4:  # LONG
                (dims[tag],) = struct.unpack_from(order + "I", data, entry + 8)
    if 256 in dims and 257 in dims:
        return dims[256], dims[257]
    return None


def _header_size(data: bytes, fmt: str | None) -> tuple[int, int] | None:
    """(width, height) read from the file header when that is cheap; None when unknown or unreadable."""
    try:
        if fmt == "PNG" and len(data) >= 24:
            width, height = struct.unpack_from(">II", data, 16)
            return width, height
        if fmt == "JPEG":
            return _jpeg_size(data)
        if fmt == "BMP" and len(data) >= 26:
            width, height = struct.unpack_from("<ii", data, 18)
            return abs(width), abs(height)  # a negative height means top-down rows
        if fmt == "TIFF":
            return _tiff_size(data)
    except struct.error:
        return None
    return None


def _check_complete(data: bytes, fmt: str | None, name: str) -> None:
    """Raise when the bytes stop before the format's end marker.

    Decoders differ on truncated input: some OpenCV builds return a half-grey JPEG with only a warning. Checking the
    end marker ourselves makes a partly written file (camera still writing, copy cut short) a clear error everywhere.
    """
    if fmt == "JPEG" and not data.rstrip(b"\x00").endswith(_JPEG_EOI):
        raise ImageDecodeError(f"{name}: truncated JPEG: no end-of-image marker FFD9 at the end of {len(data)} bytes")
    if fmt == "PNG" and _PNG_IEND not in data[-64:]:
        raise ImageDecodeError(f"{name}: truncated PNG: no IEND chunk at the end of {len(data)} bytes")
    if fmt == "BMP" and len(data) >= 6:
        (declared,) = struct.unpack_from("<I", data, 2)
        if declared > len(data):
            raise ImageDecodeError(f"{name}: truncated BMP: header declares {declared} bytes, file has {len(data)}")


def _check_pixels(width: int, height: int, max_pixels: int, name: str) -> None:
    """Raise when width x height is above the limit (guards memory against bogus or huge files)."""
    pixels = width * height
    if pixels > max_pixels:
        raise ImageDecodeError(f"{name}: {width} x {height} = {pixels} pixels exceeds max_pixels {max_pixels}")


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """Scale samples of any supported depth to uint8 (rules in the module docstring)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        clean = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return (np.clip(clean, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ImageDecodeError(f"{name}: unsupported sample type {arr.dtype} (expected uint8, uint16 or float)")


def _over_black(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite uint8 colour (HxWxC) with uint8 alpha (HxW) onto black, rounded."""
    weighted = colour.astype(np.uint16) * alpha[..., None].astype(np.uint16) + 127
    return (weighted // 255).astype(np.uint8)


def _to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """Turn a decoded OpenCV array (grey, grey+alpha, BGR or BGRA) into HxWx3 RGB."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3:
        raise ImageDecodeError(f"{name}: unsupported array shape {arr.shape} from the decoder")
    channels = arr.shape[2]
    if channels == 2:
        grey = _over_black(arr[:, :, :1], arr[:, :, 1])
        return np.repeat(grey, 3, axis=2)
    if channels == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if channels == 4:
        bgr = _over_black(arr[:, :, :3], arr[:, :, 3])
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    raise ImageDecodeError(f"{name}: unsupported channel count {channels} (expected 1, 2, 3 or 4)")


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, TIFF, ...) to an HxWx3 uint8 RGB array.

    Args:
        data: the whole encoded file.
        name: how to refer to the image in error messages (usually its path).
        max_pixels: largest width x height accepted; checked from the header before decoding where possible.

    Returns:
        A C-contiguous HxWx3 uint8 array in RGB order.

    Raises:
        ImageDecodeError: empty, not an image, corrupt, truncated, too large, or of an unsupported mode.
        ValueError: ``max_pixels`` is not positive.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if len(data) == 0:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    fmt = _sniff_format(data)
    size = _header_size(data, fmt)
    if size is not None:
        _check_pixels(size[0], size[1], max_pixels, name)
    _check_complete(data, fmt, name)
    try:
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        # OpenCV raises (rather than returning None) for some malformed headers and its own size limit.
        reason = str(exc).strip().splitlines()[-1]
        raise ImageDecodeError(f"{name}: cannot decode {fmt or 'image'} data ({reason})") from exc
    if arr is None or arr.size == 0:
        if fmt is None:
            head = data[:8].hex(" ")
            raise ImageDecodeError(f"{name}: not an image (unrecognised content, first bytes {head})")
        raise ImageDecodeError(f"{name}: corrupt or truncated {fmt} data ({len(data)} bytes could not be decoded)")
    _check_pixels(arr.shape[1], arr.shape[0], max_pixels, name)
    rgb = _to_rgb(_to_uint8(arr, name), name)
    return np.ascontiguousarray(rgb)


def _read_bytes(path: Path) -> bytes:
    """Whole file as bytes; every failure becomes an ImageDecodeError naming the path."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{path}: is a directory, not an image file") from None
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def read_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode an image file to HxWx3 uint8 RGB.

    Raises:
        ImageDecodeError: missing or unreadable file, or any decode failure of ``decode_image``; the message names
            the path.
    """
    p = Path(path)
    return decode_image(_read_bytes(p), name=str(p), max_pixels=max_pixels)


def read_image_and_hash(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Read a file once and return its RGB pixels and the SHA-256 of its bytes (for ``Frame.content_hash``)."""
    p = Path(path)
    data = _read_bytes(p)
    return decode_image(data, name=str(p), max_pixels=max_pixels), content_hash(data)


def content_hash(data: bytes) -> str:
    """SHA-256 of the bytes as lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def file_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes as lower-case hex, read in 1 MiB chunks so large files use little memory.

    Raises:
        FileNotFoundError / OSError: when the file cannot be read.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_encodable(image: np.ndarray) -> None:
    """Raise ValueError unless the array is HxWx3 uint8 RGB or HxW uint8 grey."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected a uint8 numpy array, got {kind}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or image.size == 0:
        raise ValueError(f"expected an HxWx3 RGB or HxW grey image, got shape {image.shape}")


def encode_image(image: np.ndarray, ext: str = ".png", jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """Encode an HxWx3 uint8 RGB (or HxW grey) array as the format named by ``ext``.

    Args:
        image: RGB or grey pixels; colour is written in the file's correct order.
        ext: one of ``IMAGE_EXTENSIONS``, with or without the dot.
        jpeg_quality: 1..100, used for JPEG only.

    Raises:
        ValueError: unsupported extension, quality or array.
    """
    suffix = ext.lower() if ext.startswith(".") else "." + ext.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise ValueError(f"unsupported image extension {ext!r}; expected one of {sorted(IMAGE_EXTENSIONS)}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    _check_encodable(image)
    pixels = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    elif suffix == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 6]
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(pixels), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {suffix}")
    return buf.tobytes()


def encode_png(image: np.ndarray) -> bytes:
    """Encode an HxWx3 uint8 RGB (or HxW grey) array as PNG bytes."""
    return encode_image(image, ".png")


def write_image(path: str | os.PathLike[str], image: np.ndarray, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> Path:
    """Write an RGB (or grey) array to ``path`` in the format of its suffix; parent folders are created.

    The bytes go to a hidden temporary file first and are renamed into place, so a folder watcher never sees a
    half-written image.

    Returns:
        The path written.

    Raises:
        ValueError: unsupported suffix or array.
        OSError: the file cannot be written.
    """
    p = Path(path)
    data = encode_image(image, p.suffix, jpeg_quality=jpeg_quality)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, p)
    return p
