"""Screenshots of the Models comparison (with a 10-class version) and the Overview click-through, taken by
headless Chromium through Playwright, for a person to look at. Writes ``models_*.png`` to ``--out``
(default ``benchmarks/out/``, git-ignored)::

    python benchmarks/models_screenshots.py --rows 20000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dashboard_screenshots import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from seed_plant import seed  # noqa: E402

from inspect_app.records import ModelVersion  # noqa: E402
from inspect_app.storage import Database, Repository  # noqa: E402
from tests.dashboard_server import serve_dashboard  # noqa: E402

CLASSES = ["good", *(f"defect-{k}" for k in range(1, 10))]


def _wide_version(db: Database) -> None:
    """A 10-class candidate with a noisy confusion matrix and validation scores."""
    rng = random.Random(1)
    n = len(CLASSES)
    matrix = [[rng.randint(30, 40) if i == j else rng.choice([0, 0, 1, 2, 4]) for j in range(n)] for i in range(n)]
    good = sorted(round(min(max(rng.gauss(0.25, 0.12), 0), 1), 4) for _ in range(300))
    defect = sorted(round(min(max(rng.gauss(0.7, 0.15), 0), 1), 4) for _ in range(200))
    Repository(db).add_model_version(ModelVersion(
        name="convnext-10cls", kind="classifier", backbone="convnext_nano", path="/models/convnext-10cls",
        classes=tuple(CLASSES), threshold=0.45, created_at=datetime.now(UTC) - timedelta(days=1),
        metrics={"classes": CLASSES, "confusion_matrix": matrix, "images": sum(map(sum, matrix)),
                 "accuracy": sum(matrix[i][i] for i in range(n)) / sum(map(sum, matrix)),
                 "auroc_good_vs_defect": 0.95, "score_samples": {"good": good, "defect": defect}}))


def _pick(page: Page, label: str, option: str) -> None:
    """Choose ``option`` in the Streamlit selectbox labelled ``label``."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.locator("input").click()
    page.keyboard.type(option)
    page.keyboard.press("Enter")
    page.wait_for_timeout(2500)


def main() -> None:
    """Seed, serve and shoot; print the screenshot paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inspect-shots-") as tmp:
        url = f"sqlite:///{Path(tmp, 'plant.db').as_posix()}"
        seed(url, args.rows)
        with Database.open(url) as db:
            _wide_version(db)
        open_viewing = {"INSPECT_DASHBOARD_OPEN_VIEWING": "true"}
        with serve_dashboard(Path(tmp), database_url=url, settings=open_viewing) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 2400})
            page.goto(f"{base}models")
            page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
            page.wait_for_timeout(2500)
            _pick(page, "Version B", "convnext-10cls")
            page.screenshot(path=str(out / "models_compare.png"), full_page=True)
            page.goto(base)
            page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
            page.wait_for_timeout(3000)
            # A real click on the Pareto chart's first (tallest) bar, near its foot.
            chart = page.locator('[data-testid="stVegaLiteChart"]').nth(1)
            box = chart.bounding_box()
            if box is not None:
                page.mouse.click(box["x"] + box["width"] * 0.22, box["y"] + box["height"] * 0.5)
                page.wait_for_timeout(3000)
            page.screenshot(path=str(out / "models_overview_click.png"), full_page=True)
            text = page.locator("body").inner_text()
            print("click-through caption:", [ln for ln in text.splitlines() if "NG part(s) behind" in ln][:2])
            browser.close()
            for name in ("models_compare.png", "models_overview_click.png"):
                print(out / name)


if __name__ == "__main__":
    main()
