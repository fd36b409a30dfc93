"""Typed frozen records passed between layers: no torch, no SQL.

``storage.repository`` is the one place that turns these into rows and back.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

GOOD_CLASS = "good"


def spooled_count(path: Path) -> int:
    """Entries waiting in a JSON Lines spool file: its non-blank lines (0 while there is no file)."""
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def utcnow() -> datetime:
    """Timezone-aware current UTC time."""
    return datetime.now(UTC)


class Decision(enum.StrEnum):
    """What the station does with a part."""

    OK = "OK"
    REVIEW = "REVIEW"
    NG = "NG"
    ERROR = "ERROR"


class ModelStatus(enum.StrEnum):
    """Life stage of a model version."""

    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"


class RunStatus(enum.StrEnum):
    """Life stage of a training run."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Frame:
    """One decoded image and where it came from.

    Attributes:
        image: HxWx3 uint8 RGB array.
        source: source reference (folder, camera index, stream URL).
        ref: path of the file, or ``frame:<index>`` for live sources.
        captured_at: UTC capture time.
        content_hash: SHA-256 of the file bytes (or of the pixels for live frames).
        index: position of the frame in its source (file order or frame counter).
        station: station the frame was captured at.
        line: production line of that station.
    """

    image: np.ndarray
    source: str
    ref: str
    captured_at: datetime
    content_hash: str
    index: int = 0
    station: str = ""
    line: str = ""


@dataclass(frozen=True)
class Prediction:
    """A model's verdict on one image.

    Attributes:
        label: most likely class name.
        score: defect score in [0, 1]; higher means more likely defective.
        decision: OK / REVIEW / NG from the score and thresholds.
        class_scores: probability per class name.
        heatmap: optional HxW float32 map in [0, 1] showing where the defect evidence is.
        defect_class: most likely defect class when the decision is not OK, else ``None``.
        raw_score: the model's own unbounded score (a good-only model's patch distance) that ``score`` normalises;
            ``None`` for a classifier, whose probability is its score.
    """

    label: str
    score: float
    decision: Decision
    class_scores: dict[str, float] = field(default_factory=dict)
    heatmap: np.ndarray | None = None
    defect_class: str | None = None
    raw_score: float | None = None


@dataclass(frozen=True)
class Inspection:
    """One recorded decision (or failure) for one image, as written to the database."""

    station: str
    line: str
    source: str
    image_path: str
    decision: Decision
    created_at: datetime = field(default_factory=utcnow)
    content_hash: str | None = None
    model_version: str | None = None
    defect_class: str | None = None
    score: float | None = None
    raw_score: float | None = None
    threshold: float | None = None
    latency_ms: float | None = None
    heatmap_path: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        assert self.created_at.tzinfo is not None, "inspection timestamps must be timezone-aware UTC"


_INSPECTION_FIELDS = frozenset(f.name for f in fields(Inspection))


def inspection_to_json(inspection: Inspection) -> str:
    """One spool line for an inspection (every field, so a replay rebuilds it exactly)."""
    values = asdict(inspection)
    values["created_at"] = inspection.created_at.isoformat()
    values["decision"] = Decision(inspection.decision).value
    return json.dumps(values, sort_keys=True)


def inspection_from_json(line: str) -> Inspection:
    """Inverse of ``inspection_to_json``.

    Raises:
        ValueError: the line is not a spooled inspection.
    """
    values: dict[str, Any] = json.loads(line)
    if not isinstance(values, dict) or set(values) != _INSPECTION_FIELDS:
        raise ValueError(f"spool line has fields {sorted(values) if isinstance(values, dict) else values!r}")
    values["created_at"] = datetime.fromisoformat(values["created_at"])
    values["decision"] = Decision(values["decision"])
    return Inspection(**values)


@dataclass(frozen=True)
class ModelVersion:
    """A trained model registered in the plant database."""

    name: str
    kind: str
    backbone: str
    path: str
    classes: tuple[str, ...]
    metrics: dict[str, Any] = field(default_factory=dict)
    status: ModelStatus = ModelStatus.CANDIDATE
    threshold: float = 0.5
    data_fingerprint: str | None = None
    training_run_id: int | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class TrainingRun:
    """A fine-tuning run as recorded in the database."""

    config: dict[str, Any]
    data_dir: str
    status: RunStatus = RunStatus.QUEUED
    id: int | None = None
    model_name: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    log_path: str | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The run queue's view (filled by ``storage.runs``): who holds the run, how far it got, whether to stop.
    worker: str | None = None
    heartbeat_at: datetime | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    cancel_requested: bool = False
    schedule: str | None = None
    data_fingerprint: str | None = None


@dataclass(frozen=True)
class ModelComparison:
    """A champion/challenger evaluation on one frozen test set, stored whether or not the candidate won.

    Attributes:
        candidate: the new model version's name.
        champion: the active model's name at evaluation time (``None`` when there was none).
        promoted: whether the candidate became active.
        reason: one sentence a quality engineer can read.
        details: both models' metrics on the test set, per-class deltas and the policy used.
        training_run_id: the run that produced the candidate.
        created_at: UTC time of the evaluation.
    """

    candidate: str
    champion: str | None
    promoted: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    training_run_id: int | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class InspectionSummary:
    """Counts over a set of inspections, for the CLI summary and the dashboard KPIs.

    OK, REVIEW, NG and ERROR are counted apart: ``per_class`` counts NG parts only, ``review_per_class`` the REVIEW
    parts' most likely defect class (empty where the source of the counts does not split them).
    """

    total: int
    ok: int
    review: int
    ng: int
    errors: int
    per_class: dict[str, int]
    review_per_class: dict[str, int] = field(default_factory=dict)

    @property
    def decided(self) -> int:
        """Images that got a decision (errors excluded)."""
        return self.ok + self.review + self.ng

    @property
    def defect_rate(self) -> float:
        """NG share of decided images; 0 when nothing was decided."""
        return self.ng / self.decided if self.decided else 0.0

    @property
    def yield_rate(self) -> float:
        """OK share of decided images; 0 when nothing was decided."""
        return self.ok / self.decided if self.decided else 0.0


@dataclass(frozen=True)
class Review:
    """A person's verdict on one recorded inspection (storage keeps at most one per inspection).

    Attributes:
        inspection_id: database id of the inspection reviewed.
        verdict: ``Decision.OK`` or ``Decision.NG``.
        reviewer: user name of the person.
        created_at: UTC time of the verdict.
        defect_class: the defect class the person saw (NG verdicts).
        comment: free text.
    """

    inspection_id: int
    verdict: Decision
    reviewer: str
    created_at: datetime = field(default_factory=utcnow)
    defect_class: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class ReviewItem:
    """An inspection waiting in the review queue, with the database id a ``Review`` needs."""

    inspection_id: int
    inspection: Inspection


@dataclass(frozen=True)
class User:
    """A person who may sign in; the password hash never leaves storage."""

    username: str
    role: str
    display_name: str | None = None
    active: bool = True
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class AuditEvent:
    """One entry of the append-only audit log."""

    actor: str
    action: str
    target: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class DatasetSnapshot:
    """A frozen training image list; ``ModelVersion.data_fingerprint`` names the one a model was trained on."""

    fingerprint: str
    path: str
    classes: tuple[str, ...]
    image_count: int
    manifest_path: str | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class Schedule:
    """A recurring job in cron syntax (``kind`` e.g. ``train``, ``inspect``, ``purge``)."""

    name: str
    kind: str
    cron: str
    config: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    last_run_at: datetime | None = None
    next_run_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
