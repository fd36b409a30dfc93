"""Stored evidence paths found on this machine: ``existing_picture``."""

from __future__ import annotations

from pathlib import Path

from inspect_app.config.evidence import evidence_ref, evidence_relpath, existing_picture


def test_existing_picture_prefers_the_recorded_file_then_the_evidence_copies(tmp_path: Path) -> None:
    root = tmp_path / "evidence"
    key = "ab" * 32
    filed = root / evidence_relpath(key, "image", ".jpg")
    filed.parent.mkdir(parents=True)
    filed.write_bytes(b"frame picture")
    ref = evidence_ref(evidence_relpath(key, "image", ".jpg"))
    assert existing_picture(ref, None, key, root) == filed.resolve()
    # A frame never filed, or a machine without the folder: nothing to read.
    assert existing_picture("frame:3", None, "cd" * 32, root) is None
    assert existing_picture(ref, None, key, None) is None
    # A part's own file wins while it exists; once it is gone its copy by content hash stands in.
    own = tmp_path / "line" / "part.png"
    own.parent.mkdir()
    own.write_bytes(b"part")
    assert existing_picture(str(own), None, key, root) == own.resolve()
    own.unlink()
    assert existing_picture(str(own), None, key, root) == filed.resolve()
