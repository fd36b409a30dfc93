"""Where a part's evidence (its picture and heatmap overlay) lives, and how a stored path finds it on any machine.

Evidence files sit under the plant's evidence folder (``Settings.resolved_evidence_dir``) by content hash, two
folder levels deep so no folder grows past a few thousand files: ``<root>/ab/cd/<hash>.jpg`` (the part) and
``<root>/ab/cd/<hash>_heatmap.jpg`` (the overlay). A re-run of the same part writes the same names (overwrite, never
a duplicate). The database stores them as ``evidence:ab/cd/<hash>.jpg``: relative to the root, so a dashboard or
training machine that mounts the folder elsewhere resolves them with its own ``INSPECT_EVIDENCE_DIR``. Rows written
before this layout keep absolute paths, which resolve as they are.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import Literal

EVIDENCE_PREFIX = "evidence:"
# What a video, stream or camera frame records as its image before (or without) an evidence file.
FRAME_PREFIX = "frame:"
# Formats the evidence sink writes, in the order a lookup by content hash tries them.
EVIDENCE_EXTS = (".jpg", ".png")
EvidenceKind = Literal["image", "heatmap"]
EVIDENCE_KINDS: tuple[EvidenceKind, ...] = ("image", "heatmap")

_HEX = re.compile(r"[0-9a-f]{8,128}")

__all__ = [
    "EVIDENCE_EXTS", "EVIDENCE_KINDS", "EVIDENCE_PREFIX", "FRAME_PREFIX", "EvidenceKind", "evidence_copies",
    "evidence_key", "evidence_ref", "evidence_relpath", "existing_picture", "heatmap_candidates", "image_candidates",
    "is_evidence_ref", "is_frame_ref", "resolve_stored_path",
]


def evidence_key(content_hash: str | None, fallback: bytes) -> str:
    """The name evidence is filed under: the content hash when it is a hex digest, else the SHA-256 of ``fallback``
    (a row without a usable hash still gets a stable, file-safe name)."""
    key = (content_hash or "").lower()
    return key if _HEX.fullmatch(key) else hashlib.sha256(fallback).hexdigest()


def evidence_relpath(key: str, kind: EvidenceKind, ext: str) -> PurePosixPath:
    """Path of one evidence file relative to the evidence root, e.g. ``ab/cd/<key>_heatmap.jpg``.

    Raises:
        ValueError: ``kind`` is not one of ``EVIDENCE_KINDS``, or ``ext`` does not start with a dot.
    """
    if kind not in EVIDENCE_KINDS:
        raise ValueError(f"evidence kind {kind!r} is not one of {list(EVIDENCE_KINDS)}")
    if not ext.startswith("."):
        raise ValueError(f"evidence file extension {ext!r} must start with a dot (e.g. '.jpg')")
    name = f"{key}_heatmap{ext}" if kind == "heatmap" else f"{key}{ext}"
    return PurePosixPath(key[:2], key[2:4], name)


def evidence_ref(relpath: PurePosixPath) -> str:
    """The stored form of an evidence file: ``evidence:<path relative to the evidence root>``."""
    return EVIDENCE_PREFIX + relpath.as_posix()


def is_evidence_ref(stored: str | None) -> bool:
    """Whether a stored path is relative to the evidence root (``evidence:...``)."""
    return bool(stored) and str(stored).startswith(EVIDENCE_PREFIX)


def is_frame_ref(stored: str | None) -> bool:
    """Whether a stored image path names a video/stream frame that has no file (``frame:<index>``)."""
    return bool(stored) and str(stored).startswith(FRAME_PREFIX)


def resolve_stored_path(stored: str | None, evidence_root: Path | None) -> Path | None:
    """The local path of a stored image or heatmap path, or ``None`` when it names no file.

    ``evidence:`` paths are joined to this machine's ``evidence_root`` (``None``: not resolvable); anything else
    (absolute paths of older rows, a folder source's own file) is returned as it is. ``frame:<index>`` and empty
    values name no file. Callers that serve files still check the result against their allow-list (a stored ``..``
    must not escape the root).
    """
    if not stored or is_frame_ref(stored):
        return None
    if is_evidence_ref(stored):
        relative = stored[len(EVIDENCE_PREFIX):]
        return Path(evidence_root) / relative if relative and evidence_root is not None else None
    return Path(stored)


def evidence_copies(content_hash: str | None, kind: EvidenceKind, evidence_root: Path | None) -> list[Path]:
    """Where an evidence file of the part with ``content_hash`` may be under ``evidence_root`` (one path per
    format the sink writes), found by hash alone: for rows whose evidence was written after the row (replayed from a
    sink spool) or whose stored path points elsewhere."""
    key = (content_hash or "").lower()
    if evidence_root is None or not _HEX.fullmatch(key):
        return []
    return [Path(evidence_root) / evidence_relpath(key, kind, ext) for ext in EVIDENCE_EXTS]


def image_candidates(
    image_path: str | None, heatmap_path: str | None, content_hash: str | None, evidence_root: Path | None
) -> list[Path]:
    """Where a part's picture may be, best first: its recorded image path, the copy filed beside its overlay (this
    layout, ``<hash>_heatmap`` → ``<hash>``, and the older flat one, ``<stem>_overlay`` → ``<stem>_image``), then the
    copy found by content hash. Paths are local (see ``resolve_stored_path``); none is checked for existence."""
    candidates: list[Path] = []
    if (recorded := resolve_stored_path(image_path, evidence_root)) is not None:
        candidates.append(recorded)
    if (overlay := resolve_stored_path(heatmap_path, evidence_root)) is not None:
        for marker, image_marker in (("_heatmap", ""), ("_overlay", "_image")):
            if overlay.stem.endswith(marker):
                stem = overlay.stem[: -len(marker)] + image_marker
                candidates.append(overlay.with_name(stem + overlay.suffix))
    candidates += evidence_copies(content_hash, "image", evidence_root)
    return list(dict.fromkeys(candidates))


def heatmap_candidates(heatmap_path: str | None, content_hash: str | None, evidence_root: Path | None) -> list[Path]:
    """Where a part's heatmap overlay may be, best first: its recorded path, then the copy found by content hash."""
    recorded = resolve_stored_path(heatmap_path, evidence_root)
    candidates = ([recorded] if recorded is not None else []) + evidence_copies(content_hash, "heatmap", evidence_root)
    return list(dict.fromkeys(candidates))


def existing_picture(
    image_path: str | None, heatmap_path: str | None, content_hash: str | None, evidence_root: Path | None
) -> Path | None:
    """The first of ``image_candidates`` that is a file on this machine (absolute), or ``None``: where a reviewed
    part's picture is read from when it becomes training data (``reviews export``, a run's snapshot)."""
    for candidate in image_candidates(image_path, heatmap_path, content_hash, evidence_root):
        if candidate.is_file():
            return candidate.resolve()
    return None
