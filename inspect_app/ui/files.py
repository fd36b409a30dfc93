"""Which files the dashboard may show: regular files whose real path lies under a served folder, and nothing else.

Heatmap, part-image and log paths come from database rows, which a bug or anyone able to write the database could
point anywhere (``/etc/passwd``, ``../../``, a symlink out of the evidence folder). Every page asks ``served_image`` or
``served_text`` and shows the bytes it returns, or a placeholder with the reason. The file is opened once, at the
checked real path (not following a symlink there), so what is shown is what was checked. No torch, no Streamlit.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from inspect_app.config import Settings

# Formats browsers show and PIL checks; anything else is refused as "not an image".
IMAGE_FORMATS = frozenset({"PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"})
MAX_IMAGE_BYTES = 32 * 1024 * 1024
# A log tail needs the end of the file only; reading at most this much keeps a huge log from stalling the page.
MAX_TEXT_BYTES = 256 * 1024

OUTSIDE = "outside the evidence and data folders"
NOT_RECORDED = "no file recorded"
NOT_FOUND = "file not found"
NOT_REGULAR = "not a regular file"
EMPTY = "empty file"
TOO_LARGE = "file too large"
NOT_IMAGE = "not an image"
NOT_TEXT = "not a text file"

__all__ = ["MAX_IMAGE_BYTES", "MAX_TEXT_BYTES", "ServedFile", "check_path", "served_image", "served_roots",
           "served_text"]


@dataclass(frozen=True)
class ServedFile:
    """Outcome of a check: the file's bytes when it may be shown, else ``None`` and the reason.

    Attributes:
        data: the file's content (for text: its last ``MAX_TEXT_BYTES`` at most), or ``None``.
        reason: why the file is not shown (a short phrase for a caption), or ``None``.
        path: the checked real path, when the path was inside a served folder.
    """

    data: bytes | None
    reason: str | None = None
    path: Path | None = None


def served_roots(settings: Settings) -> tuple[Path, ...]:
    """Real paths of the folders the dashboard may show files from (``Settings.served_roots``)."""
    return tuple(Path(os.path.realpath(root)) for root in settings.served_roots)


def check_path(path: str | os.PathLike[str] | None, roots: Iterable[Path]) -> tuple[Path | None, str | None]:
    """The real path (symlinks and ``..`` resolved) of ``path`` when it lies under one of ``roots``, else the reason.

    A path outside every root gets ``OUTSIDE`` whether or not it exists, so the dashboard does not reveal which
    files exist elsewhere. ``roots`` must be real paths (see ``served_roots``).
    """
    if path is None or not str(path).strip():
        return None, NOT_RECORDED
    real = Path(os.path.realpath(path))
    if not any(real == root or real.is_relative_to(root) for root in roots):
        return None, OUTSIDE
    if not real.exists():
        return None, NOT_FOUND
    return real, None


def _read(real: Path, limit: int, tail: bool) -> ServedFile:
    """Open ``real`` without following a symlink, check it is a non-empty regular file, and read it."""
    try:
        # O_NOFOLLOW: a symlink put in place after the check is refused; O_NONBLOCK: a FIFO cannot hang the page.
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return ServedFile(None, f"unreadable ({exc.strerror or type(exc).__name__})", real)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        # Checked on the open descriptor (what would be read), before wrapping it: a folder cannot be wrapped.
        os.close(fd)
        return ServedFile(None, NOT_REGULAR, real)
    with os.fdopen(fd, "rb") as handle:
        if info.st_size == 0:
            return ServedFile(None, EMPTY, real)
        if info.st_size > limit and not tail:
            return ServedFile(None, f"{TOO_LARGE} ({info.st_size:,} bytes; at most {limit:,})", real)
        try:
            if tail and info.st_size > limit:
                handle.seek(info.st_size - limit)
            data = handle.read(limit)
        except OSError as exc:
            return ServedFile(None, f"unreadable ({exc.strerror or type(exc).__name__})", real)
    return ServedFile(data, None, real) if data else ServedFile(None, EMPTY, real)


def _is_image(data: bytes) -> bool:
    """Whether ``data`` decodes completely as an image of one of ``IMAGE_FORMATS``."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.format not in IMAGE_FORMATS:
                return False
            probe.verify()
        # verify() checks the structure only; a full decode also catches truncated pixel data.
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False
    return True


def served_image(path: str | os.PathLike[str] | None, roots: Sequence[Path]) -> ServedFile:
    """The bytes of the image at ``path`` if the dashboard may show it, else the reason (see ``check_path``)."""
    real, reason = check_path(path, roots)
    if real is None:
        return ServedFile(None, reason)
    served = _read(real, MAX_IMAGE_BYTES, tail=False)
    if served.data is not None and not _is_image(served.data):
        return ServedFile(None, NOT_IMAGE, real)
    return served


def served_text(path: str | os.PathLike[str] | None, roots: Sequence[Path], limit: int = MAX_TEXT_BYTES) -> ServedFile:
    """The last ``limit`` bytes of the text file at ``path`` if the dashboard may show it, else the reason."""
    real, reason = check_path(path, roots)
    if real is None:
        return ServedFile(None, reason)
    served = _read(real, limit, tail=True)
    if served.data is not None and b"\x00" in served.data:
        # NUL bytes: a binary file (a model, a database) that a log path was pointed at.
        return ServedFile(None, NOT_TEXT, real)
    return served
