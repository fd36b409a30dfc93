"""Screenshots of the Drift and Shift report pages on the seeded plant, taken by headless Chromium, to look at.

Serves an existing seeded database (``--db``, e.g. the one ``drift_alarms.py`` leaves in /tmp) with
``inspect-app dashboard`` in the plant zone ``--zone`` and drives Debian's ``/usr/bin/chromium`` through Playwright
(as ``dashboard_screenshots.py`` does), writing ``drift_all.png``, ``drift_paint-2.png``, ``shifts_last.png`` and
``shifts_pdf.png`` (the last completed shift's PDF in Chromium's viewer) to ``--out`` (default ``benchmarks/out/``,
git-ignored)::

    python benchmarks/drift_shift_screenshots.py --db sqlite:////tmp/drift_1000000.db --zone Europe/Berlin
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dashboard_screenshots import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

from inspect_app.app import shifts  # noqa: E402
from inspect_app.config.plant import DEFAULT_SHIFTS  # noqa: E402
from inspect_app.storage import Database  # noqa: E402
from tests.dashboard_server import serve_dashboard  # noqa: E402


def _write_pdf(url: str, zone: ZoneInfo, target: Path) -> None:
    """The last completed shift's report as the page would offer it."""
    with Database.open(url) as db:
        window = shifts.last_completed_shift(DEFAULT_SHIFTS, zone, datetime.now(UTC))
        target.write_bytes(shifts.report_pdf(shifts.shift_report(db, window), zone))


def _shoot(page: Page, url: str, target: Path, ready: str, station: str | None = None) -> float:
    """Open ``url``, optionally pick ``station`` in the sidebar, wait for ``ready`` and save a full-page PNG."""
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(ready, timeout=60_000)
    if station is not None:
        page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
        page.get_by_role("option", name=station, exact=True).click()
        page.wait_for_timeout(1500)
    page.wait_for_timeout(2500)  # charts draw after the first elements
    elapsed = time.perf_counter() - start
    page.screenshot(path=str(target), full_page=True)
    return elapsed


def main() -> None:
    """Serve and shoot; print the screenshot paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="seeded database URL")
    parser.add_argument("--zone", default="Europe/Berlin")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inspect-shots-") as tmp:
        settings = {"INSPECT_DASHBOARD_OPEN_VIEWING": "true", "INSPECT_PLANT_TIME_ZONE": args.zone}
        with serve_dashboard(Path(tmp), database_url=args.db, settings=settings) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            chart = '[data-testid="stVegaLiteChart"]'
            shots = [("drift_all.png", f"{base}drift", chart, None),
                     ("drift_paint-2.png", f"{base}drift", chart, "paint-2"),
                     ("shifts_last.png", f"{base}shifts", '[data-testid="stMetric"]', None)]
            for name, url, ready, station in shots:
                seconds = _shoot(page, url, out / name, ready, station)
                print(f"{out / name} ({seconds:.1f} s to draw, waits included)")
            pdf = Path(tmp) / "shift.pdf"
            _write_pdf(args.db, ZoneInfo(args.zone), pdf)
            page.goto(pdf.as_uri())
            page.wait_for_timeout(3000)  # the built-in viewer draws after load
            page.screenshot(path=str(out / "shifts_pdf.png"))
            print(out / "shifts_pdf.png")
            browser.close()


if __name__ == "__main__":
    main()
