"""The Review page (``ui.review``, ``ui.review_cards``) driven by ``streamlit.testing`` against a seeded SQLite file
with real part pictures and heatmap overlays; every control is checked by what it leaves in the database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from inspect_app.app import users
from inspect_app.records import Decision, Inspection, ModelStatus, ModelVersion
from inspect_app.storage import Database, Repository
from inspect_app.storage.tables import UNCLASSIFIED
from inspect_app.ui import app, review

APP_FILE = Path(app.__file__).resolve()
TIMEOUT_S = 60
PASSWORD = "correct-horse-battery"
PARTS = 30
CLASSES = ("scratch", "dent", None)
STATIONS = ("cell-a", "cell-b")
# Part k: station STATIONS[k % 2], class CLASSES[k % 3], score 0.40 + k/200, made k * 4 hours ago; ids are k + 1.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(minutes=1)



def _picture(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 40, 3), value, np.uint8)).save(path)


@pytest.fixture
def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """PARTS waiting REVIEW parts; the first four have a picture and an overlay on disk, part 1 only its overlay
    (its picture is the evidence copy beside it), part 2's files are gone."""
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    rows = []
    for k in range(PARTS):
        image = tmp_path / "parts" / f"{k}.png"
        overlay = tmp_path / "evidence" / f"{k:04d}_overlay.png"
        if k < 4 and k != 2:
            _picture(overlay, 200)
            _picture(image if k != 1 else overlay.with_name(f"{k:04d}_image.png"), 60)
        rows.append(Inspection(
            station=STATIONS[k % 2], line="line-1", source="/in", image_path=str(image), decision=Decision.REVIEW,
            created_at=NOW - timedelta(hours=4 * k), content_hash=f"h{k}", model_version="m1",
            defect_class=CLASSES[k % 3], score=0.40 + k / 200, heatmap_path=str(overlay),
        ))
    with Database.open(url) as db:
        repo = Repository(db)
        repo.add_inspections(rows)
        repo.add_model_version(ModelVersion(name="m1", kind="classifier", backbone="efficientnet_lite0",
                                            path="/models/m1", classes=("good", "scratch", "dent"), metrics={},
                                            status=ModelStatus.ACTIVE, threshold=0.5, created_at=NOW))
        for role in ("viewer", "operator"):
            users.create_user(db, role, role, PASSWORD)
    monkeypatch.setenv("INSPECT_DATABASE_URL", url)
    monkeypatch.setenv("INSPECT_HOME", str(tmp_path))
    return {"url": url, "rows": rows}


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open(user: str = "operator") -> AppTest:
    """The Review page, signed in through the sidebar form."""
    at = _run(AppTest.from_file(str(APP_FILE), default_timeout=TIMEOUT_S))
    at.sidebar.text_input(key="sign_in_user").input(user)
    at.sidebar.text_input(key="sign_in_password").input(PASSWORD)
    next(b for b in at.sidebar.button if b.label == "Sign in").click()
    at = _run(at)
    at.switch_page("views/review.py")
    return _run(at)


def _cards(at: AppTest) -> list[int]:
    """Inspection ids of the cards on the page, top to bottom."""
    return [int(b.key.split("_")[1]) for b in at.button if b.key and b.key.startswith("item_")
            and b.key.endswith("_zoom")]


def _verdicts(url: str) -> dict[int, tuple[str, str | None]]:
    """Every recorded review: inspection id → (verdict, defect class)."""
    with Database.open(url) as db:
        repo = Repository(db)
        return {i: (r.verdict.value, r.defect_class) for i in range(1, PARTS + 1) if (r := repo.get_review(i))}


def _audited(url: str) -> list[str]:
    with Database.open(url) as db:
        return [event.target for event in Repository(db).list_audit(action="review.add")]


def test_verdict_on_second_card_lands_on_that_part(plant: dict) -> None:
    at = _open()
    before = _cards(at)
    assert before[:3] == [1, 2, 3]  # newest first
    at.button(key=f"item_{before[1]}_ok").click()
    at = _run(at)
    assert _verdicts(plant["url"]) == {before[1]: ("OK", None)}
    assert at.success and at.success[0].value == f"#{before[1]} recorded as OK"
    # The judged card is gone at once and its neighbours moved up, each still carrying its own id.
    after = _cards(at)
    assert after[:2] == [before[0], before[2]] and before[1] not in after
    at.selectbox(key=f"item_{after[1]}_class").select("dent")
    at.button(key=f"item_{after[1]}_ng").click()
    at = _run(at)
    assert _verdicts(plant["url"]) == {before[1]: ("OK", None), before[2]: ("NG", "dent")}
    assert len(_audited(plant["url"])) == 2


def test_paging_sizes_numbers_and_count(plant: dict) -> None:
    at = _open()
    assert len(_cards(at)) == 12
    assert any(c.value.startswith(f"Cards 1–12 of {PARTS} waiting · page 1 of 3") for c in at.caption)
    first = _cards(at)
    at.button(key="review_next_page").click()
    at = _run(at)
    second = _cards(at)
    assert len(second) == 12 and not set(first) & set(second) and second[0] == 13
    at.number_input(key="review_page").set_value(3)
    at = _run(at)
    assert _cards(at) == list(range(25, PARTS + 1))
    at.selectbox(key="review_page_size").select(24)
    at = _run(at)
    # Page 3 does not exist at 24 per page: the page becomes the last one.
    assert at.number_input(key="review_page").value == 2 and _cards(at) == list(range(25, PARTS + 1))
    at.button(key="review_previous_page").click()
    at = _run(at)
    assert _cards(at) == list(range(1, 25))


def test_verdict_on_a_later_page_lands_on_that_part_and_the_page_stays(plant: dict) -> None:
    """Page 2 is a keyset read after page 1's last part: a verdict there removes only the judged part from it."""
    at = _open()
    at.number_input(key="review_page").set_value(2)  # a jump: no key for page 2 is known yet
    at = _run(at)
    jumped = _cards(at)
    assert jumped == list(range(13, 25))
    at.button(key="review_previous_page").click()
    at = _run(at)
    at.button(key="review_next_page").click()  # walked: page 2 starts after page 1's last part
    at = _run(at)
    assert _cards(at) == jumped
    at.button(key=f"item_{jumped[3]}_ok").click()
    at = _run(at)
    assert _verdicts(plant["url"]) == {jumped[3]: ("OK", None)}
    # The part from page 3 moves up into page 2; nothing from page 1 slides in.
    assert _cards(at) == [*jumped[:3], *jumped[4:], 25]
    assert any(c.value.startswith(f"Cards 13–24 of {PARTS - 1} waiting · page 2 of 3") for c in at.caption)


@pytest.mark.parametrize(
    ("control", "value", "expected"),
    [
        ("review_class", "dent", [k + 1 for k in range(PARTS) if CLASSES[k % 3] == "dent"]),
        ("review_class", UNCLASSIFIED, [k + 1 for k in range(PARTS) if CLASSES[k % 3] is None]),
        ("review_station", "cell-b", [k + 1 for k in range(PARTS) if k % 2]),
        ("review_score", (0.45, 0.47), [k + 1 for k in range(PARTS) if 0.45 <= 0.40 + k / 200 <= 0.47]),
    ],
)
def test_filters_narrow_the_cards(plant: dict, control: str, value: object, expected: list[int]) -> None:
    at = _open()
    at.selectbox(key="review_page_size").select(48)
    widget = at.sidebar.slider(key=control) if control == "review_score" else at.sidebar.selectbox(key=control)
    widget.set_value(value)
    at = _run(at)
    assert _cards(at) == expected
    waiting = PARTS if control != "review_station" else len(expected)
    assert any(f"of {len(expected)} waiting" in c.value for c in at.caption)
    if control != "review_station":
        assert any(f"({waiting} waiting in all)" in c.value for c in at.caption)


def test_date_range_filter_takes_whole_utc_days(plant: dict) -> None:
    at = _open()
    at.selectbox(key="review_page_size").select(48)
    day = (NOW - timedelta(days=2)).date()
    at.sidebar.date_input(key="review_dates").set_value((day, day))
    at = _run(at)
    expected = [k + 1 for k, row in enumerate(plant["rows"]) if row.created_at.date() == day]
    assert expected and _cards(at) == expected


def test_side_by_side_overlay_opacity_and_missing_files(plant: dict) -> None:
    at = _open()
    captions = [img.captions for img in at.image]
    # Part 0: its picture and overlay; part 1: the evidence copy stands in for the missing picture; part 2: nothing.
    assert captions[:2] == [["Part", "Heatmap"], ["Part", "Heatmap"]]
    assert any(c.value == "(no part image: file not found) (no heatmap: file not found)" for c in at.caption)
    at.radio(key="review_view").set_value("Overlay")
    at = _run(at)
    assert at.image[0].captions == ["Heatmap at 50%"]
    half = at.image[0].value
    at.slider(key="review_opacity").set_value(1.0)
    at = _run(at)
    assert at.image[0].captions == ["Heatmap at 100%"] and at.image[0].value != half


def test_zoom_enlarges_one_card(plant: dict) -> None:
    at = _open()
    at.button(key="item_1_zoom").click()
    at = _run(at)
    # (AppTest does not expose an image's width; the browser screenshot shows it.)
    assert at.button(key="item_1_zoom").label == "Close zoom" and at.button(key="item_2_zoom").label == "Zoom"
    assert [c.value for c in at.caption if c.value.startswith("Zoomed")] == ["Zoomed: #1 at 640 px"]
    at.button(key="item_1_zoom").click()
    at = _run(at)
    assert at.button(key="item_1_zoom").label == "Zoom" and not any(c.value.startswith("Zoomed") for c in at.caption)


def test_batch_verdict_records_each_ticked_part(plant: dict) -> None:
    at = _open()
    ids = _cards(at)
    for inspection_id in (ids[0], ids[3], ids[5]):
        at.checkbox(key=f"item_{inspection_id}_select").check()
    at = _run(at)
    assert any(c.value == "3 of 12 cards on this page selected" for c in at.caption)
    at.selectbox(key="review_batch_class").select("dent")
    at.button(key="review_batch_ng").click()
    at = _run(at)
    assert _verdicts(plant["url"]) == {i: ("NG", "dent") for i in (ids[0], ids[3], ids[5])}
    assert sorted(_audited(plant["url"])) == sorted(f"inspection:{i}" for i in (ids[0], ids[3], ids[5]))
    assert not {ids[0], ids[3], ids[5]} & set(_cards(at))


def test_batch_select_all_then_ok(plant: dict) -> None:
    at = _open()
    ids = _cards(at)
    at.button(key="review_select_all").click()
    at = _run(at)
    assert all(at.checkbox(key=f"item_{i}_select").value for i in ids)
    at.button(key="review_batch_ok").click()
    at = _run(at)
    assert _verdicts(plant["url"]) == {i: ("OK", None) for i in ids}
    assert _cards(at)[0] == 13


def test_batch_without_selection_records_nothing(plant: dict) -> None:
    at = _open()
    at.button(key="review_batch_ok").click()
    at = _run(at)
    assert at.error and at.error[0].value == "Tick the cards for a batch verdict first."
    assert _verdicts(plant["url"]) == {}


def test_viewer_sees_cards_without_verdict_or_batch_controls(plant: dict) -> None:
    at = _open("viewer")
    assert _cards(at)[:2] == [1, 2]
    assert not at.checkbox and not any(b.key and b.key.startswith("review_batch") for b in at.button)
    assert not any(b.key and b.key.endswith(("_ok", "_ng")) for b in at.button)


def test_shortcut_legend_is_shown(plant: dict) -> None:
    at = _open()
    assert any(c.value.startswith("Keys: **O** OK for the focused card") for c in at.caption)


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        ((), (None, None)),
        ((date(2026, 3, 2),), (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))),
        ((date(2026, 3, 5), date(2026, 3, 2)), (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 6, tzinfo=UTC))),
        (date(2026, 3, 2), (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))),
    ],
)
def test_date_window(dates: object, expected: tuple) -> None:
    assert review.date_window(dates) == expected  # type: ignore[arg-type]


def test_date_window_takes_whole_plant_days() -> None:
    chicago = ZoneInfo("America/Chicago")
    # 2026-03-08 is the spring-forward day: local midnight is 06:00 UTC, the next one 05:00 UTC.
    assert review.date_window((date(2026, 3, 8),), chicago) == (
        datetime(2026, 3, 8, 6, tzinfo=UTC), datetime(2026, 3, 9, 5, tzinfo=UTC))


def test_date_range_label_names_the_plant_zone(plant: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_PLANT_TIME_ZONE", "America/Chicago")
    at = _open()
    assert at.sidebar.date_input(key="review_dates").label == "Date range (America/Chicago)"
