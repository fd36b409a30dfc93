"""The callback types that long engine work reports through: phase events (dicts) and counters (done, total)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Called with one dict per event (a training step, an epoch, a fitting phase); the keys depend on the phase.
ProgressFn = Callable[[dict[str, Any]], None]
# Called with (items done, items in all) after each batch.
CountProgressFn = Callable[[int, int], None]
