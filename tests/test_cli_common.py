"""``cli_common.progress_bar``: a tqdm bar on a terminal, nothing at all in logs and pipes."""

from __future__ import annotations

import io
import sys

import pytest

from inspect_app.cli_common import progress_bar


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so that tqdm draws."""

    def isatty(self) -> bool:
        return True


def test_progress_bar_is_silent_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    show = progress_bar("inspecting")
    for done in (0, 4, 8, 10):
        show(done, 10)
    assert log.getvalue() == ""


def test_progress_bar_draws_label_and_count_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    show = progress_bar("evaluating")
    for done in (3, 7):
        show(done, 7)
    shown = terminal.getvalue()
    assert "evaluating" in shown
    assert "7/7" in shown
    assert shown.endswith("\n")  # closed at the end: the next line starts on its own
