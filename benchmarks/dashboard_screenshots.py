"""Screenshots of the Overview and Review pages with data, taken by headless Chromium, for a person to look at.

Seeds a database in a temporary folder (``seed_plant.seed``, 60,000 rows, plus a few part images so the Review
page shows pictures), starts ``inspect-app dashboard`` on it, and drives Debian's ``/usr/bin/chromium`` through
Playwright, waiting for the metrics to render before each shot (a bare ``chromium --screenshot`` captures the page
before Streamlit's websocket has drawn it). Writes PNGs to ``--out`` (default ``benchmarks/out/``, git-ignored)::

    python benchmarks/dashboard_screenshots.py --out /tmp/shots
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from seed_plant import seed  # noqa: E402
from sqlalchemy import update  # noqa: E402

from inspect_app.storage import Database, review_queries  # noqa: E402
from inspect_app.storage.tables import InspectionRow  # noqa: E402
from tests.dashboard_server import serve_dashboard  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]
PAGES = (("overview", ""), ("review", "review"), ("models", "models"))


def _part_images(db: Database, folder: Path) -> None:
    """Draw a part picture for each waiting REVIEW part and point its row at it (the Review page shows them)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with db.session() as session:
        for item in review_queries.review_queue(db, limit=12):
            image = np.full((160, 160, 3), 150, np.uint8) + rng.integers(0, 20, (160, 160, 3), dtype=np.uint8)
            cv2.circle(image, (80, 80), 60, (90, 90, 95), -1)
            x, y = rng.integers(40, 120, 2)
            cv2.line(image, (int(x), int(y)), (int(x) + 30, int(y) + 12), (230, 230, 230), 2)
            path = folder / f"part_{item.inspection_id}.png"
            cv2.imwrite(str(path), image)
            session.execute(update(InspectionRow).where(InspectionRow.id == item.inspection_id)
                            .values(image_path=str(path)))


def main() -> None:
    """Seed, serve and shoot; print the screenshot paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    parser.add_argument("--rows", type=int, default=60_000)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inspect-shots-") as tmp:
        url = f"sqlite:///{Path(tmp, 'plant.db').as_posix()}"
        seed(url, args.rows)
        with Database.open(url) as db:
            _part_images(db, Path(tmp) / "parts")
        # Screenshots of the read-only pages: viewing without sign-in, as an admin may turn it on.
        open_viewing = {"INSPECT_DASHBOARD_OPEN_VIEWING": "true"}
        with serve_dashboard(Path(tmp), database_url=url, settings=open_viewing) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 2200})
            for name, path in PAGES:
                page.goto(f"{base}{path}")
                page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
                # Charts draw after the metrics; wait until Streamlit reports it is idle again.
                page.wait_for_timeout(2500)
                target = out / f"{name}.png"
                page.screenshot(path=str(target), full_page=True)
                print(f"{name}: {target}")
            browser.close()


if __name__ == "__main__":
    main()
