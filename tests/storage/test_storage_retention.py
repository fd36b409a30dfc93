"""Retention: old rows and their files go, files still in use and the hourly aggregates stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from inspect_app.records import Decision, Inspection, Review
from inspect_app.storage import Database, Repository, parse_age, purge, queries, review_queries

NOW = datetime(2024, 9, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        (" 30m ", timedelta(minutes=30)),
    ],
)
def test_parse_age(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("bad", ["90", "d", "0d", "-5d", "3y", "ninety days"])
def test_parse_age_names_value_and_units(bad: str) -> None:
    with pytest.raises(ValueError, match=rf"{bad!r}.*m, h, d, w"):
        parse_age(bad)


def _files(folder: Path, name: str) -> tuple[str, str]:
    image, heatmap = folder / f"{name}.png", folder / f"{name}_overlay.png"
    image.write_bytes(b"img")
    heatmap.write_bytes(b"heat")
    return str(image), str(heatmap)


@pytest.fixture
def aged(db: Database, tmp_path: Path, inspection_factory: Any) -> dict[str, Any]:
    """30 inspections 100 days old, 10 recent ones; one old image was inspected again recently by another model."""
    old_rows, new_rows = [], []
    for i in range(30):
        image, heatmap = _files(tmp_path, f"old{i}")
        old_rows.append(inspection_factory(i, created_at=NOW - timedelta(days=100, minutes=i), image_path=image,
                                           heatmap_path=heatmap, decision=Decision.REVIEW if i < 3 else Decision.NG))
    for i in range(10):
        image, heatmap = _files(tmp_path, f"new{i}")
        new_rows.append(inspection_factory(100 + i, created_at=NOW - timedelta(days=1, minutes=i), image_path=image,
                                           heatmap_path=heatmap))
    reused = inspection_factory(0, created_at=NOW - timedelta(hours=2), model_version="resnet-v2",
                                image_path=old_rows[0].image_path, heatmap_path=old_rows[0].heatmap_path)
    repo = Repository(db)
    repo.add_inspections([*old_rows, *new_rows, reused])
    queue = review_queries.review_queue(db, limit=10)
    repo.add_review(Review(inspection_id=queue[-1].inspection_id, verdict=Decision.OK, reviewer="ana"))
    return {"old": old_rows, "new": [*new_rows, reused]}


def test_purge_deletes_old_rows_and_files_but_keeps_aggregates(db: Database, aged: dict[str, Any]) -> None:
    before = queries.summary(db)
    daily_before = queries.defect_rate_over_time(db, bucket="day")

    result = purge(db, timedelta(days=90), now=NOW, chunk=7)

    assert result.rows == 30 and result.cutoff == NOW - timedelta(days=90)
    assert result.files_kept == 2  # old0's image and heatmap belong to the recent re-inspection too
    assert result.files_deleted == 58 and result.files_missing == 0
    remaining = Repository(db).list_inspections(limit=1000)
    assert sorted(r.image_path for r in remaining) == sorted(r.image_path for r in aged["new"])
    assert all(not Path(r.image_path).exists() for r in aged["old"][1:])
    assert all(Path(r.image_path).exists() and Path(r.heatmap_path).exists() for r in aged["new"])
    # The hourly aggregates are kept: the dashboard still answers for the purged period.
    assert queries.summary(db) == before
    assert queries.defect_rate_over_time(db, bucket="day") == daily_before
    assert review_queries.review_queue_size(db) == 0  # the queue reads live rows: purged REVIEW rows left it
    [event] = Repository(db).list_audit(action="db.purge")
    assert event.details["rows"] == 30 and event.details["files_deleted"] == 58


def test_purge_again_finds_nothing(db: Database, aged: dict[str, Any]) -> None:
    purge(db, timedelta(days=90), now=NOW)
    assert purge(db, timedelta(days=90), now=NOW).rows == 0


def test_dry_run_and_keep_files_change_what_they_say(db: Database, aged: dict[str, Any]) -> None:
    assert purge(db, timedelta(days=90), now=NOW, dry_run=True).rows == 30
    assert len(Repository(db).list_inspections(limit=1000)) == 41
    result = purge(db, timedelta(days=90), now=NOW, delete_files=False)
    assert result.rows == 30 and result.files_deleted == 0
    assert all(Path(r.image_path).exists() for r in aged["old"])


def test_purge_rejects_bad_arguments(db: Database) -> None:
    with pytest.raises(ValueError, match="older_than"):
        purge(db, timedelta(0))
    with pytest.raises(ValueError, match="naive"):
        purge(db, timedelta(days=1), now=datetime(2024, 1, 1))  # naive on purpose
    with pytest.raises(ValueError, match="chunk"):
        purge(db, timedelta(days=1), chunk=0)


def test_unreadable_rows_keep_their_image(db: Database, tmp_path: Path) -> None:
    image = tmp_path / "broken.png"
    image.write_bytes(b"not an image")
    Repository(db).add_inspections([Inspection(station="s", line="l", source=str(tmp_path), image_path=str(image),
                                               decision=Decision.ERROR, created_at=NOW - timedelta(days=200),
                                               error="truncated")])
    assert purge(db, timedelta(days=90), now=NOW).rows == 1
    assert image.exists()


def test_evidence_paths_are_deleted_under_this_machines_evidence_root(db: Database, tmp_path: Path) -> None:
    # Rows store evidence relative to the evidence root; the purge must find the files where this machine mounts it.
    root = tmp_path / "mounted-elsewhere"
    heatmap, image = root / "ab" / "cd" / "abcd01_heatmap.jpg", root / "ab" / "cd" / "abcd01.jpg"
    heatmap.parent.mkdir(parents=True)
    heatmap.write_bytes(b"overlay")
    image.write_bytes(b"part")
    Repository(db).add_inspections([Inspection(
        station="s", line="l", source="camera", image_path="evidence:ab/cd/abcd01.jpg",
        heatmap_path="evidence:ab/cd/abcd01_heatmap.jpg", content_hash="abcd01", decision=Decision.NG,
        created_at=NOW - timedelta(days=200))])
    # Without a root nothing is guessed: the files are kept and said so.
    assert purge(db, timedelta(days=90), now=NOW, dry_run=True).rows == 1
    result = purge(db, timedelta(days=90), now=NOW, evidence_root=root)
    assert (result.rows, result.files_deleted, result.files_missing) == (1, 2, 0)
    assert not heatmap.exists() and not image.exists()


def test_evidence_paths_without_a_root_are_kept(db: Database, tmp_path: Path) -> None:
    Repository(db).add_inspections([Inspection(
        station="s", line="l", source="camera", image_path="evidence:ab/cd/abcd02.jpg",
        heatmap_path="evidence:ab/cd/abcd02_heatmap.jpg", content_hash="abcd02", decision=Decision.NG,
        created_at=NOW - timedelta(days=200))])
    result = purge(db, timedelta(days=90), now=NOW)
    assert (result.rows, result.files_deleted, result.files_kept) == (1, 0, 2)
