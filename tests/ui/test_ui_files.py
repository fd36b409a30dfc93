"""Files from database rows are served only from the evidence and data folders: ``ui.files`` and the pages using it.

Real files (PNG written with OpenCV, text, empty files, symlinks), a real SQLite database and the real pages driven by
``streamlit.testing``; each bad path gives a placeholder with its reason and never the file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from inspect_app.config.settings import load_settings
from inspect_app.records import Decision, Inspection, RunStatus, TrainingRun
from inspect_app.storage import Database, Repository
from inspect_app.storage.runs import RunQueue
from inspect_app.ui import app, files

APP_FILE = Path(app.__file__).resolve()
TIMEOUT_S = 60
PASSWD = "/etc/passwd"


@pytest.fixture(autouse=True)
def open_viewing(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read pages anonymously; sign-in being required by default is tested in tests/security."""
    monkeypatch.setenv("INSPECT_DASHBOARD_OPEN_VIEWING", "true")



def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((24, 32, 3), np.uint8)
    image[6:18, 8:24] = (0, 0, 255)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def evidence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A home with an evidence folder holding one good heatmap and the bad cases, by name."""
    home = tmp_path / "home"
    ng = home / "ng"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.png").write_text("root:x:0:0:root:/root:/bin/bash\n")
    _png(outside / "real.png")
    good = _png(ng / "good_overlay.png")
    empty = ng / "empty.png"
    empty.write_bytes(b"")
    text = ng / "notes.png"
    text.write_text("this is not a picture\n")
    link = ng / "link.png"
    link.symlink_to(outside / "real.png")
    truncated = ng / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    monkeypatch.setenv("INSPECT_HOME", str(home))
    monkeypatch.delenv("INSPECT_FILE_ROOTS", raising=False)
    monkeypatch.delenv("INSPECT_EVIDENCE_DIR", raising=False)
    return {
        "good": str(good), "passwd": PASSWD, "traversal": f"{ng}/../../elsewhere/real.png", "symlink": str(link),
        "empty": str(empty), "text": str(text), "truncated": str(truncated), "missing": str(ng / "gone.png"),
        "folder": str(ng), "outside": str(outside / "real.png"),
    }


def _roots() -> tuple[Path, ...]:
    return files.served_roots(load_settings())


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("passwd", files.OUTSIDE), ("traversal", files.OUTSIDE), ("symlink", files.OUTSIDE),
        ("outside", files.OUTSIDE), ("empty", files.EMPTY), ("text", files.NOT_IMAGE),
        ("truncated", files.NOT_IMAGE), ("missing", files.NOT_FOUND), ("folder", files.NOT_REGULAR),
    ],
)
def test_bad_paths_are_refused_with_their_reason(evidence: dict[str, str], case: str, reason: str) -> None:
    served = files.served_image(evidence[case], _roots())
    assert served.data is None and served.reason == reason


def test_a_good_evidence_image_is_served_byte_for_byte(evidence: dict[str, str]) -> None:
    served = files.served_image(evidence["good"], _roots())
    assert served.reason is None and served.data == Path(evidence["good"]).read_bytes()
    assert files.served_image(None, _roots()).reason == files.NOT_RECORDED


def test_configured_file_roots_and_evidence_dir_are_served(
    evidence: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    camera = _png(tmp_path / "camera" / "part.png")
    assert files.served_image(camera, _roots()).reason == files.OUTSIDE
    monkeypatch.setenv("INSPECT_FILE_ROOTS", f"{tmp_path / 'nowhere'}:{tmp_path / 'camera'}")
    assert files.served_image(camera, _roots()).data == camera.read_bytes()
    monkeypatch.setenv("INSPECT_EVIDENCE_DIR", str(tmp_path / "elsewhere"))
    assert files.served_image(evidence["outside"], _roots()).data is not None


def test_text_is_served_as_its_tail_and_binary_is_refused(evidence: dict[str, str]) -> None:
    log = Path(evidence["folder"]) / "run.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    served = files.served_text(log, _roots(), limit=64)
    assert served.data is not None and len(served.data) == 64 and served.data.endswith(b"line 999\n")
    assert files.served_text(PASSWD, _roots()).reason == files.OUTSIDE
    assert files.served_text(evidence["good"], _roots()).reason == files.NOT_TEXT


# --- the pages ----------------------------------------------------------------------------------------------------

PAGE_CASES = ("good", "passwd", "traversal", "symlink", "empty", "text")


@pytest.fixture
def plant(evidence: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """REVIEW and NG rows whose heatmap and image paths are the cases, and a run whose log is /etc/passwd."""
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    now = datetime.now(UTC)
    rows = [
        Inspection(station="cell-a", line="line-1", source="/in", image_path=evidence[case],
                   heatmap_path=evidence[case], decision=decision, created_at=now - timedelta(seconds=10 + i),
                   content_hash=f"{decision.value}{i}", model_version="m1",
                   defect_class="scratch" if decision is Decision.NG else None, score=0.5 + i / 100)
        for decision in (Decision.REVIEW, Decision.NG)
        for i, case in enumerate(PAGE_CASES)
    ]
    with Database.open(url) as db:
        Repository(db).add_inspections(rows)
        RunQueue(db).add(TrainingRun(config={"epochs": 1}, data_dir="/data", status=RunStatus.FAILED, log_path=PASSWD))
    monkeypatch.setenv("INSPECT_DATABASE_URL", url)
    return evidence


def _page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP_FILE), default_timeout=TIMEOUT_S).run()
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _placeholders(at: AppTest) -> list[str]:
    # The Review card names the part image and the heatmap apart ("(no part image: ...) (no heatmap: ...)").
    return [c.value for c in at.caption if "(no picture:" in c.value or "(no part image:" in c.value]


def _both_missing(page: str, reason: str) -> str:
    """How a page says that neither the heatmap nor the image is shown, for ``reason``."""
    if page == "review":
        return f"(no part image: {reason}) (no heatmap: {reason})"
    return f"heatmap {reason}; image {reason}"


@pytest.mark.parametrize("page", ["review", "live"])
def test_pages_show_the_good_image_and_a_reason_for_every_bad_one(plant: dict[str, str], page: str) -> None:
    at = _page(page)
    assert len(at.get("image")) == 1  # the good evidence image only
    placeholders = _placeholders(at)
    assert len(placeholders) == len(PAGE_CASES) - 1
    expected = {files.OUTSIDE: 3, files.EMPTY: 1, files.NOT_IMAGE: 1}
    for reason, count in expected.items():
        assert sum(_both_missing(page, reason) in text for text in placeholders) == count, placeholders
    assert not any("root:x:0:0" in str(element.proto) for element in at.main)


def test_training_page_does_not_show_a_log_outside_the_data_folders(plant: dict[str, str]) -> None:
    at = _page("training")
    assert any(f"not shown: {files.OUTSIDE}" in c.value for c in at.caption)
    assert not [c for c in at.code if "root:" in c.value]
