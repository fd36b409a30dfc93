"""The Review page in headless Chromium: screenshots of its views and a check that the keyboard shortcuts record
verdicts on the part that is shown.

Seeds a database in a temporary folder (``seed_plant.seed``), draws a part picture and a heatmap overlay for the
newest waiting REVIEW parts (the paths go on their rows, like ``HeatmapFileSink`` would write them), starts
``inspect-app dashboard``, signs in as the seeded operator and drives Debian's ``/usr/bin/chromium`` through Playwright.
Writes ``review_side_by_side.png``, ``review_overlay.png``, ``review_zoom.png`` and ``review_keys.png`` to ``--out``
(default ``benchmarks/out/``, git-ignored) and prints what the keys recorded::

    python benchmarks/review_screenshots.py --rows 60000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dashboard_screenshots import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from seed_plant import PASSWORD, seed  # noqa: E402
from sqlalchemy import update  # noqa: E402

from inspect_app.storage import Database, Repository, review_queries  # noqa: E402
from inspect_app.storage.tables import InspectionRow  # noqa: E402
from tests.dashboard_server import serve_dashboard  # noqa: E402

PICTURES = 48


def _evidence(db: Database, folder: Path) -> list[int]:
    """A part picture (a grey disc with a bright scratch) and its JET heatmap overlay for each of the newest
    waiting REVIEW parts; returns their ids, newest first."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = []
    with db.session() as session:
        for item in review_queries.review_queue(db, limit=PICTURES):
            image = np.full((240, 240, 3), 150, np.uint8) + rng.integers(0, 20, (240, 240, 3), dtype=np.uint8)
            cv2.circle(image, (120, 120), 90, (90, 90, 95), -1)
            x, y = (int(v) for v in rng.integers(60, 160, 2))
            cv2.line(image, (x, y), (x + 40, y + 15), (230, 230, 230), 3)
            yy, xx = np.mgrid[0:240, 0:240]
            heat = np.exp(-((xx - x - 20) ** 2 + (yy - y - 8) ** 2) / (2 * 25.0**2))
            colored = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
            overlay = cv2.addWeighted(image, 0.55, colored, 0.45, 0.0)
            stem = f"{item.inspection_id:08d}"
            cv2.imwrite(str(folder / f"{stem}_image.png"), image)
            cv2.imwrite(str(folder / f"{stem}_overlay.png"), overlay)
            session.execute(update(InspectionRow).where(InspectionRow.id == item.inspection_id).values(
                image_path=str(folder / f"{stem}_image.png"), heatmap_path=str(folder / f"{stem}_overlay.png")))
            ids.append(item.inspection_id)
    return ids


def _settle(page: Page) -> None:
    """Wait until Streamlit has finished the run the last action started."""
    page.wait_for_timeout(500)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=60_000)
    page.wait_for_timeout(1500)


def _verdicts(url: str, ids: list[int]) -> dict[int, str]:
    with Database.open(url) as db:
        repo = Repository(db)
        return {i: f"{r.verdict.value} {r.defect_class or ''}".strip() for i in ids if (r := repo.get_review(i))}


def main() -> None:
    """Seed, serve, shoot and press keys; print the screenshot paths and the recorded verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    parser.add_argument("--rows", type=int, default=60_000)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inspect-review-") as tmp:
        url = f"sqlite:///{Path(tmp, 'plant.db').as_posix()}"
        seed(url, args.rows)
        with Database.open(url) as db:
            ids = _evidence(db, Path(tmp) / "evidence")
        with serve_dashboard(Path(tmp), database_url=url) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            page.goto(base)
            page.get_by_label("User").fill("operator")
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("Signed in as").first.wait_for(timeout=60_000)
            started = time.perf_counter()
            page.goto(f"{base}review")
            page.locator(f".st-key-card_{ids[0]} img").first.wait_for(timeout=60_000)
            print(f"review page with pictures in the browser: {time.perf_counter() - started:.2f} s")
            _settle(page)
            shots = {}
            page.screenshot(path=str(shots.setdefault("side_by_side", out / "review_side_by_side.png")))
            page.get_by_text("Overlay", exact=True).click()
            _settle(page)
            page.screenshot(path=str(shots.setdefault("overlay", out / "review_overlay.png")))
            page.locator(f".st-key-item_{ids[0]}_zoom button").click()
            _settle(page)
            page.screenshot(path=str(shots.setdefault("zoom", out / "review_zoom.png")))
            page.locator(f".st-key-item_{ids[0]}_zoom button").click()
            _settle(page)
            # Keys: J moves the focus to the second card, O records OK there; the third card moves into its
            # place, N records NG for it with the class its card shows.
            page.mouse.click(5, 5)
            page.keyboard.press("j")
            page.keyboard.press("o")
            _settle(page)
            after_ok = _verdicts(url, ids[:4])
            page.keyboard.press("n")
            _settle(page)
            after_ng = _verdicts(url, ids[:4])
            page.screenshot(path=str(shots.setdefault("keys", out / "review_keys.png")))
            browser.close()
            print(f"cards before the keys: {ids[:4]}")
            print(f"after J, O: {after_ok}")
            print(f"after N:    {after_ng}")
            for name, path in shots.items():
                print(f"{name}: {path}")


if __name__ == "__main__":
    main()
