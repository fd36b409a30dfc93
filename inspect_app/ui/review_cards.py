"""One Review card: the part's picture beside (or under) its heatmap, what the model said, and the verdict controls.

Every widget key carries the inspection id (``item_<id>_...``) and the card's container is keyed ``card_<id>``, so a
widget always belongs to the part it is drawn on, whatever cards came or went since the last run. Verdicts are
recorded in ``on_click`` callbacks, which Streamlit runs *before* the page is drawn again: the next run reads the
queue without the judged part, and no button of a stale card layout can be acted on.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image, UnidentifiedImageError

from inspect_app.app import reviews
from inspect_app.config import load_settings
from inspect_app.config.evidence import heatmap_candidates, image_candidates
from inspect_app.errors import InspectAppError
from inspect_app.records import Inspection, ReviewItem
from inspect_app.ui import files
from inspect_app.ui.common import current_user, database, role_hint

logger = logging.getLogger(__name__)

VIEWS = ("Side by side", "Overlay")
OTHER_CLASS = "(other…)"
# Pictures at a size that shows a defect without pushing the controls off the screen; a zoomed card is wider.
IMAGE_PX = 240
ZOOM_IMAGE_PX = 640
# Session-state key of the zoomed card's inspection id and of the messages the callbacks leave for the page.
ZOOM_KEY = "review_zoom"
MESSAGES_KEY = "review_messages"

__all__ = [
    "OTHER_CLASS",
    "VIEWS",
    "PartPictures",
    "blend",
    "item_key",
    "part_pictures",
    "record_verdicts",
    "render_card",
    "selected_ids",
]


def item_key(inspection_id: int, control: str) -> str:
    """Widget key of one card's control, e.g. ``item_42_ok``."""
    return f"item_{inspection_id}_{control}"


@dataclass(frozen=True)
class PartPictures:
    """What the evidence paths of one inspection give the dashboard: image bytes, or why there are none.

    Attributes:
        image / heatmap: the bytes of the part's picture and of its heatmap overlay, or ``None``.
        image_reason / heatmap_reason: a short phrase for a missing one (``files.NOT_FOUND`` ...).
    """

    image: bytes | None
    heatmap: bytes | None
    image_reason: str | None = None
    heatmap_reason: str | None = None


def _first_served(candidates: Sequence[Path], roots: Sequence[Path]) -> tuple[bytes | None, str | None]:
    """The bytes of the first candidate the dashboard may show, else the first candidate's reason (the recorded
    path's reason is the one worth showing; the others are fallbacks)."""
    reason = None
    for path in candidates:
        served = files.served_image(path, roots)
        if served.data is not None:
            return served.data, None
        reason = reason or served.reason
    return None, reason or files.NOT_RECORDED


def part_pictures(inspection: Inspection, roots: Sequence[Path], evidence_root: Path | None = None) -> PartPictures:
    """Read the part's picture and heatmap through ``ui.files`` (only files under the served folders).

    ``evidence:`` paths resolve against ``evidence_root`` (this machine's evidence folder), which also finds evidence
    by content hash when the row records none (``config.evidence``).
    """
    image, image_reason = _first_served(
        image_candidates(inspection.image_path, inspection.heatmap_path, inspection.content_hash, evidence_root), roots
    )
    heatmap, heatmap_reason = _first_served(
        heatmap_candidates(inspection.heatmap_path, inspection.content_hash, evidence_root), roots
    )
    return PartPictures(image, heatmap, image_reason, heatmap_reason)


def blend(image: bytes, heatmap: bytes, opacity: float) -> bytes:
    """The heatmap overlay laid over the part's picture at ``opacity`` (0: the part only, 1: the overlay as stored),
    as PNG bytes; the overlay is resized to the picture.

    Raises:
        ValueError: ``opacity`` outside [0, 1], or bytes that do not decode as images.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"heatmap opacity {opacity!r} must be between 0 and 1")
    try:
        with Image.open(io.BytesIO(image)) as base_file, Image.open(io.BytesIO(heatmap)) as top_file:
            base = base_file.convert("RGB")
            top = top_file.convert("RGB").resize(base.size)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot blend the pictures: {exc}") from exc
    out = io.BytesIO()
    Image.blend(base, top, opacity).save(out, format="PNG")
    return out.getvalue()


def _missing(label: str, reason: str | None) -> str:
    return f"({label}: {reason or files.NOT_RECORDED})"


def render_pictures(inspection: Inspection, view: str, opacity: float, zoomed: bool) -> None:
    """Draw the part beside its heatmap, or the heatmap over the part; one short line per missing file."""
    settings = load_settings()
    pictures = part_pictures(inspection, files.served_roots(settings), settings.resolved_evidence_dir)
    width = ZOOM_IMAGE_PX if zoomed else IMAGE_PX
    notes = []
    if pictures.image is None:
        notes.append(_missing("no part image", pictures.image_reason))
    if pictures.heatmap is None:
        notes.append(_missing("no heatmap", pictures.heatmap_reason))
    if view == VIEWS[1] and pictures.image is not None and pictures.heatmap is not None:
        try:
            st.image(blend(pictures.image, pictures.heatmap, opacity), caption=f"Heatmap at {opacity:.0%}",
                     width=width)
        except ValueError as exc:
            logger.warning("inspection picture %s not blended: %s", inspection.image_path, exc)
            notes.append(f"(overlay not drawn: {exc})")
    else:
        shown = [(data, caption) for data, caption in ((pictures.image, "Part"), (pictures.heatmap, "Heatmap"))
                 if data is not None]
        if shown:
            st.image([data for data, _ in shown], caption=[caption for _, caption in shown], width=width)
    if notes:
        st.caption(" ".join(notes))


def _say(kind: str, text: str) -> None:
    """Leave a message for the page to show on its next run (callbacks run before the page is drawn)."""
    st.session_state.setdefault(MESSAGES_KEY, []).append((kind, text))


def record_verdicts(url: str, ids: Sequence[int], verdict: str, defect_class: str | None = None,
                    comment: str | None = None) -> int:
    """Record one verdict for every part in ``ids`` through the audited ``app.reviews.review_inspection`` (one review
    and one audit row per part); returns how many were recorded. Refusals are left as error messages naming the part.
    """
    db, user = database(url), current_user()
    recorded: list[int] = []
    for inspection_id in ids:
        try:
            reviews.review_inspection(db, user, inspection_id, verdict, defect_class=defect_class, comment=comment)
        except (InspectAppError, ValueError, LookupError) as exc:
            logger.info("review of #%s refused: %s", inspection_id, exc)
            _say("error", f"#{inspection_id}: {exc}")
            continue
        recorded.append(inspection_id)
        st.session_state.pop(item_key(inspection_id, "select"), None)
    if recorded:
        st.cache_data.clear()
        label = verdict if verdict == "OK" else f"{verdict} {defect_class}"
        parts = ", ".join(f"#{i}" for i in recorded)
        _say("success", f"{parts} recorded as {label}")
    return len(recorded)


def chosen_class(inspection_id: int) -> str:
    """The defect class picked on one card (the typed one for "other")."""
    chosen = st.session_state.get(item_key(inspection_id, "class")) or ""
    if chosen == OTHER_CLASS:
        return (st.session_state.get(item_key(inspection_id, "other")) or "").strip()
    return chosen


def _on_verdict(url: str, inspection_id: int, verdict: str) -> None:
    """Button callback of one card."""
    comment = st.session_state.get(item_key(inspection_id, "comment")) or None
    defect = chosen_class(inspection_id) if verdict == "NG" else None
    record_verdicts(url, [inspection_id], verdict, defect_class=defect, comment=comment)


def _on_zoom(inspection_id: int) -> None:
    """Zoom one card, or unzoom it when it is the zoomed one."""
    st.session_state[ZOOM_KEY] = None if st.session_state.get(ZOOM_KEY) == inspection_id else inspection_id


def selected_ids(ids: Sequence[int]) -> list[int]:
    """The parts among ``ids`` whose card is ticked for a batch verdict."""
    return [i for i in ids if st.session_state.get(item_key(i, "select"))]


def render_card(url: str, item: ReviewItem, classes: list[str], view: str, opacity: float,
                may_review: bool = True) -> None:
    """One part: pictures, what the model said, and (for a user who may review) the verdict controls."""
    inspection, inspection_id = item.inspection, item.inspection_id
    zoomed = st.session_state.get(ZOOM_KEY) == inspection_id
    with st.container(border=True, key=f"card_{inspection_id}"):
        score = "–" if inspection.score is None else f"{inspection.score:.3f}"
        header = (f"**#{inspection_id}** · {inspection.station} · {inspection.created_at:%Y-%m-%d %H:%M:%S} UTC  \n"
                  f"Model: **{inspection.decision.value}** {inspection.defect_class or ''} (score {score})  \n"
                  f"`{inspection.image_path}`")
        if zoomed:
            st.markdown(header)
            st.caption(f"Zoomed: #{inspection_id} at {ZOOM_IMAGE_PX} px")
            render_pictures(inspection, view, opacity, zoomed=True)
            controls = st.container()
        else:
            left, controls = st.columns([3, 2])
            with left:
                render_pictures(inspection, view, opacity, zoomed=False)
            controls.markdown(header)
        with controls:
            st.button("Close zoom" if zoomed else "Zoom", key=item_key(inspection_id, "zoom"), on_click=_on_zoom,
                      args=(inspection_id,))
            if not may_review:
                return
            st.checkbox("Select for a batch verdict", key=item_key(inspection_id, "select"))
            options = [*classes, OTHER_CLASS]
            default = options.index(inspection.defect_class) if inspection.defect_class in options else 0
            chosen = st.selectbox("Defect class (for NG)", options, index=default,
                                  key=item_key(inspection_id, "class"))
            if chosen == OTHER_CLASS:
                st.text_input("Other defect class", key=item_key(inspection_id, "other"))
            st.text_input("Comment", key=item_key(inspection_id, "comment"))
            ok_col, ng_col = st.columns(2)
            help_text = role_hint("review")
            ok_col.button("Good part (OK)", key=item_key(inspection_id, "ok"), help=help_text, on_click=_on_verdict,
                          args=(url, inspection_id, "OK"))
            ng_col.button("Defective (NG)", key=item_key(inspection_id, "ng"), help=help_text, on_click=_on_verdict,
                          args=(url, inspection_id, "NG"))
