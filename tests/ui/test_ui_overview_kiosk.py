"""The Overview on a wall screen (``?kiosk=1``, ``ui.overview_kiosk``): no filters or controls, and large figures for
the lines, the shifts, the worst station and the last alarm of the seeded plant."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from inspect_app.ui import overview_kiosk
from tests.ui import test_ui_pages as pages

plant = pages.plant
_run = pages._run


def _kiosk() -> AppTest:
    at = AppTest.from_file(str(pages.APP_FILE), default_timeout=pages.TIMEOUT_S)
    at.query_params[overview_kiosk.KIOSK_PARAM] = "1"
    return _run(at)


def test_kiosk_shows_lines_shifts_worst_station_and_last_alarm_without_controls(plant: dict) -> None:
    at = _kiosk()
    texts = [m.value for m in at.markdown]
    assert overview_kiosk.HIDE_CHROME in texts
    assert [s.value for s in at.subheader] == ["Defect rate by line", "Defect rate by shift", "Worst station",
                                               "Last alarm"]
    figures = " ".join(texts)
    assert f"{100 * 3 / 9:.1f} %</div><div style='{overview_kiosk.NOTE}'>line-1 · 9 parts" in figures
    shift_parts = [int(n) for n in re.findall(r"Shift \w+ \d\d-\d\d(?: \(now\))? · (\d+) parts", figures)]
    assert shift_parts and sum(shift_parts) == 9 and "(now)" in figures
    assert "cell-b 50.0 %" in figures and "no alarm so far" in figures
    # No filters, no KPI row, no charts to click, no purge: a wall screen is read, not used.
    assert not at.selectbox and not at.radio and not at.metric and not at.get("vega_lite_chart")
    assert any("refreshes every 60 s" in c.value for c in at.caption)


def test_kiosk_refresh_follows_the_setting(plant: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_DASHBOARD_REFRESH_S", "0")
    at = _kiosk()
    assert any("auto-refresh off" in c.value for c in at.caption)
