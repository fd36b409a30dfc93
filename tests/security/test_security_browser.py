"""The session in a real browser: headless Chromium against ``inspect-app dashboard``.

Sign-in survives a reload and a second tab (the signed cookie), a fresh browser sees only the sign-in form, and a
sign-out in one tab ends the session in the other. Skipped without Debian's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard_server import serve_dashboard

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "ana-long-password"

pytestmark = pytest.mark.slow


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[str]:
    """A dashboard on loopback over a fresh SQLite home with admin ``ana``; yields its URL."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt install chromium)")
    pytest.importorskip("playwright.sync_api")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    subprocess.run([sys.executable, "-m", "inspect_app", "--home", str(tmp_path), "users", "add", "ana", "--role",
                    "admin", "--password-stdin"], input=f"{PASSWORD}\n", text=True, check=True, env=env,
                   capture_output=True)
    with serve_dashboard(tmp_path) as url:
        yield url


def _session_cookie(context: object, deadline_s: float = 60) -> dict:
    """The session cookie once the page's script has set it (it runs just after the signed-in page is drawn)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = [c for c in context.cookies() if c["name"] == "inspect_session"]  # type: ignore[attr-defined]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError("no inspect_session cookie was set after sign-in")


def test_a_session_survives_reload_and_second_tab_and_ends_everywhere_on_sign_out(dashboard: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(dashboard)
            page.get_by_label("User").wait_for(timeout=60_000)
            # Nothing of the plant before sign-in: no page menu, no figures.
            assert page.get_by_text("Inspection overview").count() == 0
            page.get_by_label("User").fill("ana")
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("Signed in as").first.wait_for(timeout=60_000)
            cookie = _session_cookie(context)
            assert cookie["sameSite"] == "Strict" and PASSWORD not in cookie["value"]

            page.reload()
            page.get_by_text("Signed in as").first.wait_for(timeout=60_000)
            tab = context.new_page()
            tab.goto(dashboard)
            tab.get_by_text("Signed in as").first.wait_for(timeout=60_000)

            stranger = browser.new_context().new_page()
            stranger.goto(dashboard)
            stranger.get_by_label("User").wait_for(timeout=60_000)
            assert stranger.get_by_text("Signed in as").count() == 0

            tab.get_by_role("button", name="Sign out").click()
            tab.get_by_label("User").wait_for(timeout=60_000)
            page.reload()
            page.get_by_label("User").wait_for(timeout=60_000)
            assert page.get_by_text("Signed in as").count() == 0
        finally:
            browser.close()
