"""Hostile input: SQL-injection strings in free-text fields, path traversal in path-like fields.

Real databases (SQLite, and PostgreSQL when configured) through the same functions the dashboard and the CLI call:
every string is stored and read back verbatim or refused with a message, never executed; the plant's rows survive.
Paths that climb out of the served folders are refused before any file is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from inspect_app.app import access, reviews, users
from inspect_app.storage import Database, Repository, queries, review_queries
from inspect_app.storage.tables import InspectionRow
from inspect_app.ui import app
from inspect_app.ui.files import NOT_FOUND, OUTSIDE, check_path, served_image, served_text

PAYLOADS = (
    "x'; DROP TABLE inspections; --",
    "' OR '1'='1",
    "admin' --",
    '"; DELETE FROM users; --',
    "1; UPDATE users SET role='admin'",
    "\\'; TRUNCATE audit_log; --",
)
PASSWORD = "correct-horse-battery"  # the plant fixture's (test code does not import conftest modules)


def _intact(db: Database) -> None:
    repo = Repository(db)
    assert len(repo.list_inspections(limit=100)) == 6
    assert {u.username for u in repo.list_users()} >= {"viewer", "operator", "engineer", "admin"}
    assert {u.username: u.role for u in repo.list_users()}["viewer"] == "viewer"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_sign_in_refuses_injection_in_name_and_password(plant: Database, payload: str) -> None:
    at = AppTest.from_file(str(Path(app.__file__).resolve()), default_timeout=60).run()
    for user, password in ((payload, PASSWORD), ("admin", payload), (payload, payload)):
        at.sidebar.text_input(key="sign_in_user").input(user)
        at.sidebar.text_input(key="sign_in_password").input(password)
        next(b for b in at.sidebar.button if b.label == "Sign in").click()
        at.run()
        assert not at.exception
        assert not [m for m in at.sidebar.markdown if m.value.startswith("Signed in as")]
    _intact(plant)


def test_free_text_fields_store_injection_strings_verbatim(plant: Database) -> None:
    repo = Repository(plant)
    engineer = repo.get_user("engineer")
    admin = repo.get_user("admin")
    with plant.session() as session:
        ids = list(session.scalars(select(InspectionRow.id)))
    assert len(ids) == 6
    for inspection_id, payload in zip(ids, PAYLOADS, strict=False):
        reviews.review_inspection(plant, engineer, inspection_id, "NG", defect_class=payload, comment=payload)
        review = repo.get_review(inspection_id)
        assert (review.defect_class, review.comment) == (payload, payload)
    for n, payload in enumerate(PAYLOADS):
        users.create_user(plant, f"user{n}", "viewer", PASSWORD, actor=admin, display_name=payload)
        assert repo.get_user(f"user{n}").display_name == payload
    # A filter is a bound parameter: a hostile station name matches nothing and breaks nothing.
    for payload in PAYLOADS:
        assert queries.summary(plant, station=payload).total == 0
        assert review_queries.review_queue(plant, station=payload) == []
        assert repo.get_user(payload) is None
    _intact(plant)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_user_names_with_sql_are_refused_or_stored_as_text(plant: Database, payload: str) -> None:
    admin = Repository(plant).get_user("admin")
    try:
        users.create_user(plant, payload, "viewer", PASSWORD, actor=admin)
    except ValueError as exc:  # refused: the message names the value
        assert repr(payload) in str(exc) or payload in str(exc)
    else:
        assert Repository(plant).get_user(payload).username == payload
        assert access.sign_in(plant, payload, PASSWORD).username == payload
    _intact(plant)


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """A served evidence folder with one real image, and a secret file beside (outside) it."""
    import cv2
    import numpy as np

    served = tmp_path / "evidence"
    served.mkdir()
    cv2.imwrite(str(served / "part.png"), np.full((8, 8, 3), 128, np.uint8))
    (tmp_path / "secret.txt").write_text("password=hunter2\n")
    return Path(os.path.realpath(served)), tmp_path / "secret.txt"


def test_path_traversal_is_refused_before_reading(roots: tuple[Path, Path]) -> None:
    served, secret = roots
    climbing = (
        str(served / ".." / "secret.txt"),
        str(served / "sub" / ".." / ".." / "secret.txt"),
        f"{served}/../../../../etc/passwd",
        "/etc/passwd",
        str(secret),
        f"{served}/%2e%2e/secret.txt",  # a literal name, not decoded: not found inside the folder
    )
    for path in climbing:
        real, reason = check_path(path, [served])
        assert real is None and reason in (OUTSIDE, NOT_FOUND), path
        for shown in (served_image(path, [served]), served_text(path, [served])):
            assert shown.data is None and shown.reason is not None, path
    (served / "link.txt").symlink_to(secret)
    assert served_text(served / "link.txt", [served]).reason == OUTSIDE
    # The folder's own file is served: the check refuses what it should, not everything.
    assert served_image(served / "part.png", [served]).data is not None
