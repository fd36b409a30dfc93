"""``ui.review_cards``' picture handling on real image files: the served part picture, its evidence fallback, the
reasons for missing files, and the heatmap blend."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspect_app.records import Decision, Inspection
from inspect_app.ui import files
from inspect_app.ui.review_cards import blend, item_key, part_pictures


def _png(path: Path | None, value: int, size: tuple[int, int] = (8, 6)) -> bytes:
    """A flat RGB picture (``size`` = width, height), written to ``path`` when given."""
    out = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(out, format="PNG")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(out.getvalue())
    return out.getvalue()


def _inspection(image: Path | str, heatmap: Path | str | None) -> Inspection:
    return Inspection(station="s", line="l", source="/in", image_path=str(image), decision=Decision.REVIEW,
                      heatmap_path=None if heatmap is None else str(heatmap))


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_part_pictures_reads_both_files(tmp_path: Path) -> None:
    image, overlay = _png(tmp_path / "in.png", 10), _png(tmp_path / "a_overlay.png", 250)
    pictures = part_pictures(_inspection(tmp_path / "in.png", tmp_path / "a_overlay.png"), [tmp_path])
    assert (pictures.image, pictures.heatmap) == (image, overlay)
    assert (pictures.image_reason, pictures.heatmap_reason) == (None, None)


def test_part_pictures_falls_back_to_the_evidence_copy(tmp_path: Path) -> None:
    copy = _png(tmp_path / "ev" / "abc_image.png", 30)
    _png(tmp_path / "ev" / "abc_overlay.png", 250)
    pictures = part_pictures(_inspection(tmp_path / "gone.png", tmp_path / "ev" / "abc_overlay.png"), [tmp_path])
    assert pictures.image == copy


def test_part_pictures_names_why_files_are_missing(tmp_path: Path) -> None:
    outside = tmp_path.parent / "elsewhere.png"
    pictures = part_pictures(_inspection(outside, tmp_path / "x_overlay.png"), [tmp_path / "served"])
    assert pictures.image is None and pictures.image_reason == files.OUTSIDE
    assert pictures.heatmap is None and pictures.heatmap_reason == files.OUTSIDE
    (tmp_path / "served").mkdir()
    pictures = part_pictures(_inspection(tmp_path / "served" / "gone.png", None), [tmp_path / "served"])
    assert (pictures.image_reason, pictures.heatmap_reason) == (files.NOT_FOUND, files.NOT_RECORDED)


def test_blend_runs_from_the_part_to_the_overlay() -> None:
    part, overlay = _png(None, 0, (8, 6)), _png(None, 200, (4, 3))
    assert (_pixels(blend(part, overlay, 0.0)) == 0).all()
    assert (_pixels(blend(part, overlay, 1.0)) == 200).all()
    half = _pixels(blend(part, overlay, 0.5))
    # The overlay is resized to the part's size.
    assert half.shape == (6, 8, 3) and (half == 100).all()


@pytest.mark.parametrize("opacity", [-0.1, 1.5])
def test_blend_rejects_opacity_outside_0_1(opacity: float) -> None:
    with pytest.raises(ValueError, match=f"heatmap opacity {opacity} must be between 0 and 1"):
        blend(_png(None, 0), _png(None, 1), opacity)


def test_blend_rejects_bytes_that_are_not_images() -> None:
    with pytest.raises(ValueError, match="cannot blend the pictures"):
        blend(b"not a picture", _png(None, 1), 0.5)


def test_item_key_carries_the_inspection_id() -> None:
    assert item_key(42, "ok") == "item_42_ok"
