"""Every dashboard page in headless Chromium against the real server on a plant of 1,000,000 seeded inspections.

The plant is seeded once per test run (``benchmarks/seed_plant.py``; shared by the pytest-xdist workers through a
file lock under the run's base temporary folder), each worker starts one ``inspect-app dashboard`` on it and signs in
once per role. Each page, visited as the role that uses it, fails on a Streamlit exception box, Python
traceback text, a chart that drew no marks, or an unformatted value in a metric or table cell (a float with more
than three decimals, ``None``, ``NaN``, a ``+00:00`` or ISO ``T`` timestamp). With ``INSPECT_SCREENSHOTS=1`` each page
is also saved full-page to ``benchmarks/out/browser_<page>.png`` (git-ignored). ``INSPECT_BROWSER_ROWS`` seeds fewer
rows for a quick local run. Skipped without Debian's ``/usr/bin/chromium`` or Playwright.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspect_app.app import users
from inspect_app.storage import Database, queries, review_queries
from inspect_app.storage.tables import InspectionRow
from tests.dashboard_server import serve_dashboard

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import seed_plant  # noqa: E402

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ROWS = int(os.environ.get("INSPECT_BROWSER_ROWS", "1000000"))
SHOTS = REPO_ROOT / "benchmarks" / "out"
VIEWPORT = {"width": 1600, "height": 1200}
# (name, URL path, role that uses the page), in the menu order of ``ui.app.PAGES``.
PAGES = (
    ("overview", "", "viewer"),
    ("live", "live", "operator"),
    ("alarms", "alarms", "operator"),
    ("review", "review", "operator"),
    ("models", "models", "engineer"),
    ("training", "training", "engineer"),
    ("drift", "drift", "engineer"),
    ("shifts", "shifts", "viewer"),
    ("admin", "admin", "admin"),
)
# Values a person should never read in a metric or a table cell.
UNFORMATTED = {
    "float with more than 3 decimals": re.compile(r"\d\.\d{4,}"),
    "raw None": re.compile(r"\bNone\b"),
    "NaN": re.compile(r"\b(?:NaN|nan)\b"),
    "+00:00 timestamp": re.compile(r"[+-]00:00\b"),
    "ISO T timestamp": re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:"),
    "seconds with microseconds": re.compile(r":\d{2}\.\d{3,}"),
}
# The marks Vega drew in a chart's SVG (axes, grid and legends have roles of their own).
MARKS_JS = "c => c.querySelectorAll('svg .role-mark > *').length"


def _draw_parts(db: Database, folder: Path, served_as: Path) -> None:
    """Pictures for the parts the Overview and Review pages show first (latest NG, the first review cards), written
    to ``folder`` and recorded as ``served_as`` (where ``folder`` will be: under the home the dashboard serves), so
    those pages draw images rather than placeholders."""
    import cv2
    import numpy as np
    from sqlalchemy import update

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    # Seeded image paths are unique per part, so they name the rows to point at the pictures.
    shown = [item.inspection.image_path for item in review_queries.review_queue(db, limit=48)]
    shown += [inspection.image_path for inspection in queries.latest_ng(db, limit=40)]
    with db.session() as session:
        for index, recorded in enumerate(dict.fromkeys(shown)):
            image = np.full((160, 160, 3), 150, np.uint8) + rng.integers(0, 20, (160, 160, 3), dtype=np.uint8)
            cv2.circle(image, (80, 80), 60, (90, 90, 95), -1)
            x, y = (int(v) for v in rng.integers(40, 120, 2))
            cv2.line(image, (x, y), (x + 30, y + 12), (230, 230, 230), 2)
            cv2.imwrite(str(folder / f"part_{index}.png"), image)
            session.execute(update(InspectionRow).where(InspectionRow.image_path == recorded)
                            .values(image_path=str(served_as / f"part_{index}.png")))


@pytest.fixture(scope="session")
def plant_home(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A home folder with the seeded plant (``ROWS`` inspections, one user per role), seeded once per test run."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt install chromium)")
    pytest.importorskip("playwright.sync_api")
    base = tmp_path_factory.getbasetemp()
    # Under xdist every worker has its own base folder inside the run's; the run's is where they meet.
    shared = base if worker_id == "master" else base.parent
    home = shared / "browser-plant"
    with open(shared / "browser-plant.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not home.exists():
            # Seeded beside and renamed when complete: a worker never sees (or reseeds into) a half-filled plant.
            partial = shared / "browser-plant.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            url = f"sqlite:///{(partial / 'inspect.db').as_posix()}"
            start = time.perf_counter()
            seed_plant.seed(url, ROWS)
            with Database.open(url) as db:
                users.create_user(db, "viewer", "viewer", seed_plant.PASSWORD)
                _draw_parts(db, partial / "parts", home / "parts")
            partial.rename(home)
            logger.info("seeded %s inspections in %.1f s", f"{ROWS:,}", time.perf_counter() - start)
    return home


@pytest.fixture(scope="session")
def dashboard(plant_home: Path) -> Iterator[str]:
    """``inspect-app dashboard`` on the seeded plant (one per worker); yields its URL."""
    with serve_dashboard(plant_home) as url:
        yield url


@pytest.fixture(scope="session")
def browser(dashboard: str) -> Iterator[Any]:
    """Headless Chromium (one per worker)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def signed_in(browser: Any, dashboard: str) -> Iterator[dict[str, Any]]:
    """Browser contexts by role, each signed in once through the sidebar form (the session cookie then serves every
    new tab of that context)."""
    contexts: dict[str, Any] = {}

    def context_for(role: str) -> Any:
        if role not in contexts:
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            page.goto(dashboard)
            page.get_by_label("User").wait_for(timeout=60_000)
            page.get_by_label("User").fill(role)
            page.get_by_role("textbox", name="Password").fill(seed_plant.PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("Signed in as").first.wait_for(timeout=60_000)
            end = time.monotonic() + 30
            while not any(c["name"] == "inspect_session" for c in context.cookies()):
                assert time.monotonic() < end, f"no session cookie after signing in as {role}"
                time.sleep(0.2)
            page.close()
            contexts[role] = context
        return contexts[role]

    yield context_for  # type: ignore[misc]
    for context in contexts.values():
        context.close()


def _wait_until_drawn(page: Any) -> None:
    """Until the script has run (and stays idle) and every chart has its SVG."""
    page.get_by_text("Signed in as").first.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " return app && app.dataset.testScriptState === 'notRunning'; }", timeout=90_000)
    # A page may rerun itself once (query parameters, session restore): settle, then wait again.
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]').dataset.testScriptState === 'notRunning'"
        " && [...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')].every(c => c.querySelector('svg'))",
        timeout=90_000)
    page.wait_for_timeout(300)


def _problems(page: Any) -> list[str]:
    """Everything on the drawn page that a plant should never see."""
    found = []
    for box in page.query_selector_all('[data-testid="stException"]'):
        found.append(f"exception box: {box.inner_text()[:300]!r}")
    main_text = page.inner_text('[data-testid="stMain"]')
    if "Traceback (most recent call last)" in main_text:
        found.append("Python traceback text on the page")
    for index, chart in enumerate(page.query_selector_all('[data-testid="stVegaLiteChart"]')):
        if chart.evaluate(MARKS_JS) == 0:
            found.append(f"chart {index + 1} drew no marks")
    cells = [("metric", e.inner_text()) for e in page.query_selector_all('[data-testid="stMetricValue"]')]
    cells += [("table cell", e.inner_text()) for e in page.query_selector_all(
        '[data-testid="stDataFrame"] [data-testid^="glide-cell-"], [data-testid="stTable"] td')]
    for kind, text in cells:
        for what, pattern in UNFORMATTED.items():
            if pattern.search(text):
                found.append(f"{kind} {text.strip()!r}: {what}")
    return found


@pytest.mark.parametrize(("name", "path", "role"), PAGES)
def test_page_draws_without_errors_empty_charts_or_raw_values(signed_in: Any, dashboard: str, name: str,
                                                               path: str, role: str) -> None:
    page = signed_in(role).new_page()
    try:
        start = time.perf_counter()
        page.goto(dashboard + path)
        _wait_until_drawn(page)
        drawn_s = time.perf_counter() - start
        logger.info("%s drawn in %.2f s as %s", name, drawn_s, role)
        if os.environ.get("INSPECT_SCREENSHOTS") == "1":
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / f"browser_{name}.png"), full_page=True)
        # The page is the one asked for, not the sign-in prompt or another page.
        assert page.query_selector('[data-testid="stHeading"]') is not None, f"{name}: no heading was drawn"
        problems = _problems(page)
        assert not problems, f"{name} as {role}:\n" + "\n".join(problems)
    finally:
        page.close()


def test_the_seeded_plant_has_the_rows_the_pages_draw(plant_home: Path) -> None:
    """The pages above were drawn over ``ROWS`` inspections, NG parts among them."""
    with Database.open(f"sqlite:///{(plant_home / 'inspect.db').as_posix()}") as db:
        totals = queries.summary(db)
        assert totals.total == ROWS
        assert totals.ng > 0 and totals.review > 0
