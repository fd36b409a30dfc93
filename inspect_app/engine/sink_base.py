"""What every sink shares: the item a sink takes, the ``Sink`` protocol, a part's key and row, JSON Lines appends."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspect_app.records import Decision, Inspection, Prediction

# One decided part on its way to the sinks: the inspection row, the image and the prediction (both ``None`` for an
# error row).
SinkItem = tuple[Inspection, np.ndarray | None, Prediction | None]

# Decisions whose parts keep their evidence (picture and heatmap) for review and retraining.
EVIDENCE_DECISIONS = frozenset({Decision.NG, Decision.REVIEW})

CSV_FIELDS = (
    "created_at", "station", "line", "source", "image_path", "content_hash", "model_version", "decision",
    "defect_class", "score", "raw_score", "threshold", "latency_ms", "heatmap_path", "error",
)


class Sink(Protocol):
    """Anything that accepts batches of decided items."""

    def write(self, items: Sequence[SinkItem]) -> Sequence[SinkItem]:
        """Store the batch; may return the items with fields filled in (e.g. heatmap paths)."""
        ...


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    """What identifies one part's line in an output file: station, model and content hash (the image path for a
    file that could not be read).

    The sinks that append to files run before the database sink, so a run killed between them leaves lines whose
    rows were never committed; the re-run inspects those parts again, and this key keeps their lines single.
    """
    part = row.get("content_hash") or f"path:{row.get('image_path') or ''}"
    return (str(row.get("station") or ""), str(row.get("model_version") or ""), str(part))


def inspection_to_dict(inspection: Inspection) -> dict[str, Any]:
    """JSON-ready dict of an inspection (the CSV columns, timestamps in ISO-8601 UTC)."""
    row = {name: getattr(inspection, name) for name in CSV_FIELDS}
    row["created_at"] = inspection.created_at.isoformat()
    row["decision"] = inspection.decision.value
    return row


def append_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Append records as JSON lines and fsync, so a spool line that was written survives a power cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
