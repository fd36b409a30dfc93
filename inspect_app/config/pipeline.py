"""Pipeline specs: the flat ``PipelineSpec`` the engine runs, and ``PipelineFile``, the layout of ``pipelines/*.yaml``.

A pipeline file has sections (``station``, ``source``, ``model``, ``inference``, ``sinks``, ``stats``); each is a model
of its own, so an unknown or bad key is refused with its path (``inference.batch_size``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator

from inspect_app.config.base import ConfigModel, choice, read_yaml
from inspect_app.config.settings import DEVICES

SOURCE_KINDS = ("folder", "glob", "watch", "video", "stream", "camera")
BACKENDS = ("torch", "onnx")


def _one_hook(webhook: str | None, command: str | None) -> None:
    if webhook and command:
        raise ValueError("reject hook: give either 'webhook' or 'command', not both")


class PipelineSpec(ConfigModel):
    """A declared pipeline (``pipelines/*.yaml``): where images come from, which model decides, where results go.

    Relative paths in the file are resolved against the current working directory, so the shipped examples run from
    the repository root.

    Attributes:
        name: pipeline name (for logs).
        source_kind: one of ``SOURCE_KINDS``.
        source: folder path (for ``folder``).
        model: checkpoint folder.
        station: station name recorded with every inspection.
        line: production line recorded with every inspection.
        database_url: overrides the settings' database (the environment still wins).
        batch_size: images per inference batch.
        threshold: defect-score threshold; ``None`` keeps the model's.
        review_band: width of the REVIEW band just below the threshold; ``None`` keeps the model's.
        csv: optional CSV file to append results to.
        ng_dir: optional folder for NG heatmap overlays.
        device: ``auto``, ``cpu`` or ``cuda``.
        source_options: kind-specific source settings (``recursive``, ``poll_s``, ``settle_s``, ``backoff_s``, ...).
        live: drop oldest frames under back-pressure and reconnect on failure; ``None``: camera/stream only.
        max_wait_ms: longest wait for an inference batch to fill after its first frame.
        queue_size: capacity of the frame queue.
        backend: inference backend, one of ``BACKENDS``.
        onnx_path: exported graph for the ``onnx`` backend (default ``<model>/model.onnx``).
        follow_active: switch to the database's active model version when it changes (between batches).
        jsonl: optional JSON Lines file to append results to.
        save_ng_images: write the NG image itself next to its heatmap overlay.
        reject_webhook: URL that receives a JSON POST per rejected part.
        reject_command: command that receives the same JSON on stdin per rejected part.
        reject_on: decisions that trigger the reject signal.
        spool_dir: folder for undelivered reject signals and rows a sink could not write.
        stats_interval_s: seconds between live-figure reports.
        stats_file: JSON file holding the latest live figures (for the dashboard).
    """

    what = "pipeline option"
    secret_keys = frozenset({"database_url", "reject_webhook", "reject_command"})

    name: str
    source: str
    model: str
    source_kind: Annotated[str, choice(*SOURCE_KINDS)] = "folder"
    station: str = "station-1"
    line: str = "line-1"
    database_url: str | None = None
    batch_size: int = Field(default=16, ge=1)
    threshold: float | None = None
    review_band: float | None = None
    csv: str | None = None
    ng_dir: str | None = None
    device: Annotated[str, choice(*DEVICES)] = "auto"
    source_options: dict[str, Any] = Field(default_factory=dict)
    live: bool | None = None
    max_wait_ms: float = Field(default=50.0, ge=0)
    queue_size: int = Field(default=64, ge=1)
    backend: Annotated[str, choice(*BACKENDS)] = "torch"
    onnx_path: str | None = None
    follow_active: bool = False
    jsonl: str | None = None
    save_ng_images: bool = True
    reject_webhook: str | None = None
    reject_command: str | None = None
    reject_on: tuple[str, ...] = ("NG",)
    spool_dir: str | None = None
    stats_interval_s: float = Field(default=10.0, gt=0)
    stats_file: str | None = None

    @model_validator(mode="after")
    def _one_reject_hook(self) -> Self:
        _one_hook(self.reject_webhook, self.reject_command)
        return self

    @classmethod
    def from_yaml(cls, path: Path) -> PipelineSpec:
        """Read a pipeline file (layout: ``PipelineFile``); unknown keys in any section are refused by name."""
        file = PipelineFile.from_dict(read_yaml(Path(path)), where=f"pipeline file {str(path)!r}")
        return file.to_spec(default_name=Path(path).stem)


class _Section(ConfigModel):
    what = "key"


class StationSection(_Section):
    """``station:`` which station and line every inspection is recorded under."""

    name: str = "station-1"
    line: str = "line-1"


class SourceSection(_Section):
    """``source:`` where images come from; the options after ``live`` are passed to the source as given."""

    kind: Annotated[str, choice(*SOURCE_KINDS)] = "folder"
    path: str
    live: bool | None = None
    recursive: bool | None = None
    poll_s: float | None = None
    settle_s: float | None = None
    backoff_s: float | None = None
    max_backoff_s: float | None = None
    max_attempts: int | None = None
    pace_fps: float | None = None
    max_pixels: int | None = None

    def options(self) -> dict[str, Any]:
        """The kind-specific options the file sets (unset ones keep the source's defaults)."""
        return {k: getattr(self, k) for k in sorted(self.model_fields_set) if k not in ("kind", "path", "live")}


class ModelSection(_Section):
    """``model:`` which checkpoint decides, and how."""

    path: str
    threshold: float | None = None
    review_band: float | None = None
    backend: Annotated[str, choice(*BACKENDS)] = "torch"
    onnx_path: str | None = None
    follow_active: bool = False


class InferenceSection(_Section):
    """``inference:`` batching and device."""

    batch_size: int = Field(default=16, ge=1)
    device: Annotated[str, choice(*DEVICES)] = "auto"
    max_wait_ms: float = Field(default=50.0, ge=0)
    queue_size: int = Field(default=64, ge=1)


class RejectSection(_Section):
    """``sinks.reject:`` the signal per rejected part ("decisions", not "on": YAML 1.1 reads ``on`` as true)."""

    secret_keys = frozenset({"webhook", "command"})

    webhook: str | None = None
    command: str | None = None
    decisions: tuple[str, ...] = ("NG",)

    @model_validator(mode="after")
    def _one_hook(self) -> Self:
        _one_hook(self.webhook, self.command)
        return self


class SinksSection(_Section):
    """``sinks:`` where results go."""

    secret_keys = frozenset({"database"})

    database: str | None = None
    csv: str | None = None
    jsonl: str | None = None
    ng_dir: str | None = None
    save_ng_images: bool = True
    reject: RejectSection = Field(default_factory=RejectSection)
    spool_dir: str | None = None

    @field_validator("reject", mode="before")
    @classmethod
    def _empty_reject(cls, value: Any) -> Any:
        return {} if value is None else value


class StatsSection(_Section):
    """``stats:`` live figures."""

    interval_s: float = Field(default=10.0, gt=0)
    file: str | None = None


class PipelineFile(ConfigModel):
    """The layout of a pipeline file (``pipelines/*.yaml``)::

        name: batch-folder
        station: {name: station-1, line: line-1}
        source: {kind: folder, path: sample_data/incoming}
        model: {path: var/models/demo, threshold: 0.5}
        inference: {batch_size: 16, device: auto, max_wait_ms: 50, queue_size: 64}
        sinks: {database: null, csv: var/out/results.csv, jsonl: null, ng_dir: var/out/ng,
                reject: {webhook: http://plc-gw/reject, decisions: [NG]}, spool_dir: var/spool}
        stats: {interval_s: 10, file: var/stats/batch-folder.json}
    """

    what = "section"

    name: str | None = None
    description: str | None = None
    station: StationSection = Field(default_factory=StationSection)
    source: SourceSection
    model: ModelSection
    inference: InferenceSection = Field(default_factory=InferenceSection)
    sinks: SinksSection = Field(default_factory=SinksSection)
    stats: StatsSection = Field(default_factory=StatsSection)

    @field_validator("station", "source", "model", "inference", "sinks", "stats", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        """An empty section (``sinks:`` with nothing under it) reads as ``None``: treat it as ``{}``."""
        return {} if value is None else value

    def to_spec(self, default_name: str) -> PipelineSpec:
        """The flat spec the engine runs; ``default_name`` (the file's stem) when the file names none."""
        return PipelineSpec(
            name=self.name or default_name,
            source_kind=self.source.kind, source=self.source.path, live=self.source.live,
            source_options=self.source.options(),
            model=self.model.path, threshold=self.model.threshold, review_band=self.model.review_band,
            backend=self.model.backend, onnx_path=self.model.onnx_path, follow_active=self.model.follow_active,
            station=self.station.name, line=self.station.line,
            batch_size=self.inference.batch_size, device=self.inference.device,
            max_wait_ms=self.inference.max_wait_ms, queue_size=self.inference.queue_size,
            database_url=self.sinks.database, csv=self.sinks.csv, ng_dir=self.sinks.ng_dir, jsonl=self.sinks.jsonl,
            save_ng_images=self.sinks.save_ng_images, spool_dir=self.sinks.spool_dir,
            reject_webhook=self.sinks.reject.webhook, reject_command=self.sinks.reject.command,
            reject_on=self.sinks.reject.decisions,
            stats_interval_s=self.stats.interval_s, stats_file=self.stats.file,
        )
