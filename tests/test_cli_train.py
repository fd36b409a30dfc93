"""``cli_train``: ``train_progress`` (a step bar per epoch on a terminal only, one summary line per epoch always), and
``train --test-dir`` refusing a frozen test set that shares an image (by content hash) with the training data."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import Any

import pytest

from inspect_app.cli_train import train_progress


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so that tqdm draws."""

    def isatty(self) -> bool:
        return True


def _two_epochs(show: Callable[[dict[str, Any]], None]) -> None:
    """The events ``fit`` reports for two epochs of three steps (the second without an ETA: the run is over)."""
    for epoch, eta in ((1, 12.0), (2, None)):
        for step in (1, 2, 3):
            show({"phase": "train", "epoch": epoch, "step": step, "steps": 3, "loss": 0.5, "images_per_s": 40.0,
                  "epochs": 2, "eta_s": eta})
        show({"phase": "epoch", "epoch": epoch, "epochs": 2, "train_loss": 0.61234 / epoch, "images_per_s": 41.25,
              "val_accuracy": 0.5 * epoch, "val_macro_recall": 0.25 * epoch, "eta_s": eta})


def test_a_log_gets_one_summary_line_per_epoch_and_no_step_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    _two_epochs(train_progress())
    assert log.getvalue().splitlines() == [
        "epoch 1/2 train loss 0.6123 41.2 img/s val acc 0.500 val macro recall 0.250 ETA 12s",
        "epoch 2/2 train loss 0.3062 41.2 img/s val acc 1.000 val macro recall 0.500",
    ]


def test_a_terminal_gets_a_step_bar_per_epoch_then_its_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _two_epochs(train_progress())
    shown = terminal.getvalue()
    assert "epoch 1/2" in shown and "epoch 2/2" in shown and "3/3" in shown and "step" in shown
    # Each bar is closed before its summary, so every summary starts a line of its own.
    summaries = [line for line in shown.splitlines() if "train loss" in line]
    assert len(summaries) == 2 and all(line.startswith("epoch ") for line in summaries)


def test_a_summary_leaves_out_figures_the_run_has_not(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    train_progress()({"phase": "epoch", "epoch": 1, "epochs": 1, "train_loss": 0.2, "images_per_s": 9.0,
                      "val_mae": 0.125, "eta_s": None})
    assert log.getvalue() == "epoch 1/1 train loss 0.2000 9.0 img/s val mae 0.125\n"
