"""Settings and frozen run configurations.

Settings are layered: defaults → a YAML file → CLI flags → environment (``INSPECT_*``), the environment winning
for secrets and URLs such as ``INSPECT_DATABASE_URL``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from inspect_app.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adamw", "adam", "sgd")
RESIZE_MODES = ("resize", "letterbox")
AUGMENT_PRESETS = ("none", "light", "inspection", "strong")
LOSSES = ("ce", "mse")
CLASS_WEIGHTS = ("none", "sqrt", "balanced")
SAMPLERS = ("shuffle", "balanced")
SCHEDULES = ("cosine", "step")
AMP_MODES = ("auto", "off", "bf16", "fp16")
SELECT_METRICS = ("macro_recall", "escape_rate", "accuracy", "loss")


class Settings(BaseSettings):
    """Process-wide settings, read from ``INSPECT_*`` environment variables.

    Attributes:
        home: folder where the database, models and run folders live by default.
        database_url: SQLAlchemy URL; defaults to a SQLite file under ``home``.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        station: station name written with every inspection when a pipeline does not name one.
        dashboard_open_viewing: dashboard pages readable without signing in (``INSPECT_DASHBOARD_OPEN_VIEWING``;
            off by default: every page needs a signed-in user).
        session_idle_minutes: a dashboard session ends after this many minutes without a page run
            (``INSPECT_SESSION_IDLE_MINUTES``).
        session_secret: key that signs dashboard session tokens (``INSPECT_SESSION_SECRET``); without it one is
            generated once into ``<home>/session_secret`` (mode 0600). Never shown in ``repr``.
        dashboard_trust_forwarded_for: take the client address for the sign-in throttle from the
            ``X-Forwarded-For`` header a reverse proxy sets (``INSPECT_DASHBOARD_TRUST_FORWARDED_FOR``); only behind
            such a proxy, since a browser can send the header itself.
        evidence_dir: folder of NG heatmaps and part images written by pipelines (``INSPECT_EVIDENCE_DIR``; default
            ``<home>/ng``).
        file_roots: further folders the dashboard may show files from, such as a camera's image folder
            (``INSPECT_FILE_ROOTS``, separated by ``os.pathsep``).
    """

    model_config = SettingsConfigDict(env_prefix="INSPECT_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path("var"))
    database_url: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    station: str = "station-1"
    line: str = "line-1"
    # Closed by default: KPIs, part images and paths are plant data. Controls always need a signed-in user.
    dashboard_open_viewing: bool = False
    session_idle_minutes: float = Field(default=30.0, gt=0)
    session_secret: SecretStr | None = None
    dashboard_trust_forwarded_for: bool = False
    evidence_dir: Path | None = None
    # NoDecode: the environment gives a plain path list (a:b), not the JSON pydantic-settings expects for a tuple.
    file_roots: Annotated[tuple[Path, ...], NoDecode] = ()

    @field_validator("file_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        """``INSPECT_FILE_ROOTS`` as ``os.pathsep``-separated folders; empty parts are dropped."""
        if isinstance(value, str):
            return tuple(Path(part) for part in value.split(os.pathsep) if part.strip())
        return value

    def __repr_args__(self) -> Any:
        """Fields for ``repr``, with the database URL's password masked (settings may end up in a log or traceback)."""
        from inspect_app.storage.db import mask_url

        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "database_url" and value else value)

    @property
    def resolved_evidence_dir(self) -> Path:
        """Folder of NG heatmaps and evidence images: ``evidence_dir``, else ``<home>/ng``."""
        return self.evidence_dir if self.evidence_dir is not None else self.home / "ng"

    @property
    def served_roots(self) -> tuple[Path, ...]:
        """Folders the dashboard may show files from: the evidence folder, ``home`` and ``file_roots``."""
        return (self.resolved_evidence_dir, self.home, *self.file_roots)

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the explicit one, else a SQLite file under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'inspect.db').as_posix()}"

    @property
    def models_dir(self) -> Path:
        """Folder that holds trained model folders by default."""
        return self.home / "models"

    @property
    def runs_dir(self) -> Path:
        """Folder that holds training-run folders by default."""
        return self.home / "runs"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, then apply non-``None`` overrides (CLI flags).

    The environment still wins for ``database_url`` because URLs may carry secrets that must not live in files.
    """
    env_url = os.environ.get("INSPECT_DATABASE_URL")
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    if env_url:
        settings = settings.model_copy(update={"database_url": env_url})
    return settings


def check_known_keys(cls: type, values: dict[str, Any], what: str) -> None:
    """Refuse keys that are not fields of the dataclass ``cls``, naming them and the allowed ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {what} option(s) {unknown}; allowed: {sorted(known)}")


@dataclass(frozen=True)
class TrainConfig:
    """A fine-tuning recipe, saved with every run.

    Attributes:
        backbone: backbone name for ``create_backbone``.
        input_size: square input side in pixels.
        epochs: passes over the training split.
        batch_size: images per optimisation step.
        lr: peak learning rate of the head; the backbone uses ``lr * backbone_lr_scale``.
        weight_decay: L2 penalty applied as decoupled weight decay (not on norms and biases).
        optimizer: one of ``OPTIMIZERS``.
        val_fraction: share of each class held out for validation.
        seed: seed for the split, initialisation and augmentation.
        pretrained: start from pretrained ImageNet weights.
        num_workers: DataLoader worker processes.
        device: ``auto``, ``cpu`` or ``cuda``.
        max_train_images: cap on training images (quick trials); ``None`` uses all.
        freeze_bn_stats: keep the pretrained BatchNorm statistics fixed; small factory batches estimate them badly.
        resize_mode: ``resize`` (stretch to a square) or ``letterbox`` (keep the aspect ratio, pad with black).
        augment: augmentation preset, one of ``AUGMENT_PRESETS``.
        mixup: Beta(alpha, alpha) mixup strength; 0 switches it off.
        cutmix: Beta(alpha, alpha) cutmix strength; 0 switches it off.
        loss: ``ce`` (classes) or ``mse`` (numeric ``severity`` column of a CSV manifest, one output).
        label_smoothing: cross-entropy label smoothing.
        class_weights: ``none``, ``sqrt`` or ``balanced`` inverse-frequency weights in the loss.
        sampler: ``shuffle`` or ``balanced`` (every class drawn equally often).
        l1: coefficient of an explicit L1 penalty on the weights (norms and biases excluded).
        momentum: SGD momentum (``nesterov`` for Nesterov's variant).
        schedule: ``cosine`` (with linear warm-up) or ``step``.
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        step_epochs: ``step`` schedule: multiply the rate by ``step_gamma`` every this many epochs.
        layer_decay: layer-wise rate decay per backbone stage (``None``: one backbone rate).
        probe_epochs: first epochs train the head only (linear probe), then the whole network.
        ema: decay of an exponential moving average of the weights (0 = off); the average is evaluated and saved.
        grad_clip: clip the gradient norm to this value (``None`` = off).
        amp: mixed precision on CUDA: ``auto`` (bf16 where supported), ``off``, ``bf16``, ``fp16``.
        channels_last: NHWC memory layout (faster for convolutions on CUDA and on recent CPUs).
        compile: wrap the model in ``torch.compile``.
        cache_images: decode and resize every image once and keep it in memory (uint8).
        select_metric: early stopping and best-epoch choice: one of ``SELECT_METRICS``.
        false_reject_rate: operating point of the escape-rate metric.
        patience: stop after this many epochs without improvement (``None`` = never).
        folds: k of k-fold cross-validation (``None`` = one stratified split by ``val_fraction``).
        fold: which fold is the validation set when ``folds`` is set.
        time_budget_s: wall-time budget; after the first epoch the run shortens its epoch count (and its schedule)
            to end within it.
        good_class: the class of defect-free parts; ``None`` finds it from the folder names (``good``, ``ok``,
            ``pass``, ``normal``, ``no_defect``, or a name that begins or ends with one), ``"none"`` says there is
            none (defect typing: every class is a defect).
    """

    backbone: str = "efficientnet_lite0"
    input_size: int = 224
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    backbone_lr_scale: float = 0.3
    weight_decay: float = 0.01
    optimizer: str = "adamw"
    val_fraction: float = 0.2
    seed: int = 0
    pretrained: bool = True
    num_workers: int = 0
    device: str = "auto"
    max_train_images: int | None = None
    freeze_bn_stats: bool = True
    resize_mode: str = "resize"
    augment: str = "inspection"
    mixup: float = 0.0
    cutmix: float = 0.0
    loss: str = "ce"
    label_smoothing: float = 0.1
    class_weights: str = "sqrt"
    sampler: str = "shuffle"
    l1: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    schedule: str = "cosine"
    warmup_epochs: float = 0.5
    step_epochs: int = 3
    step_gamma: float = 0.1
    layer_decay: float | None = None
    probe_epochs: int = 0
    ema: float = 0.99
    grad_clip: float | None = 5.0
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    cache_images: bool = True
    select_metric: str = "macro_recall"
    false_reject_rate: float = 0.01
    patience: int | None = None
    folds: int | None = None
    fold: int = 0
    time_budget_s: float | None = None
    good_class: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.device not in DEVICES:
            raise ConfigError(f"device {self.device!r} is not one of {', '.join(DEVICES)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction {self.val_fraction!r} must lie strictly between 0 and 1")
        for name in ("input_size", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} {value!r} must be a positive integer")
        if self.lr <= 0:
            raise ConfigError(f"lr {self.lr!r} must be positive")
        choices = {
            "resize_mode": RESIZE_MODES, "augment": AUGMENT_PRESETS, "loss": LOSSES, "class_weights": CLASS_WEIGHTS,
            "sampler": SAMPLERS, "schedule": SCHEDULES, "amp": AMP_MODES, "select_metric": SELECT_METRICS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name in ("mixup", "cutmix", "l1", "weight_decay", "warmup_epochs", "probe_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} {getattr(self, name)!r} must not be negative")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing {self.label_smoothing!r} must lie in [0, 1)")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema {self.ema!r} must lie in [0, 1) (0 switches it off)")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"layer_decay {self.layer_decay!r} must lie in (0, 1] or be null")
        if self.folds is not None and (self.folds < 2 or not 0 <= self.fold < self.folds):
            raise ConfigError(f"folds {self.folds!r} / fold {self.fold!r}: need folds >= 2 and 0 <= fold < folds")
        if not 0.0 <= self.false_reject_rate < 1.0:
            raise ConfigError(f"false_reject_rate {self.false_reject_rate!r} must lie in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON/YAML."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys by name."""
        check_known_keys(cls, values, "training")
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """Copy with the non-``None`` overrides applied (CLI flags over a recipe file)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_recipe(path: Path | None, **overrides: Any) -> TrainConfig:
    """A recipe file (or the defaults when ``path`` is None) with the non-``None`` overrides (CLI flags) applied."""
    base = TrainConfig.from_dict(read_yaml(Path(path))) if path else TrainConfig()
    return base.with_overrides(**overrides)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, naming the file in every error."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {str(path)!r} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    return data


SOURCE_KINDS = ("folder", "glob", "watch", "video", "stream", "camera")
BACKENDS = ("torch", "onnx")
_SECTION_KEYS = {
    "station": {"name", "line"},
    "source": {"kind", "path", "live", "recursive", "poll_s", "settle_s", "backoff_s", "max_backoff_s",
               "max_attempts", "pace_fps", "max_pixels"},
    "model": {"path", "threshold", "review_band", "backend", "onnx_path", "follow_active"},
    "inference": {"batch_size", "device", "max_wait_ms", "queue_size"},
    "sinks": {"database", "csv", "jsonl", "ng_dir", "save_ng_images", "reject", "spool_dir"},
    "stats": {"interval_s", "file"},
}
_SOURCE_OPTIONS = (
    "recursive", "poll_s", "settle_s", "backoff_s", "max_backoff_s", "max_attempts", "pace_fps", "max_pixels",
)


@dataclass(frozen=True)
class PipelineSpec:
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

    name: str
    source: str
    model: str
    source_kind: str = "folder"
    station: str = "station-1"
    line: str = "line-1"
    database_url: str | None = None
    batch_size: int = 16
    threshold: float | None = None
    review_band: float | None = None
    csv: str | None = None
    ng_dir: str | None = None
    device: str = "auto"
    source_options: dict[str, Any] = field(default_factory=dict)
    live: bool | None = None
    max_wait_ms: float = 50.0
    queue_size: int = 64
    backend: str = "torch"
    onnx_path: str | None = None
    follow_active: bool = False
    jsonl: str | None = None
    save_ng_images: bool = True
    reject_webhook: str | None = None
    reject_command: str | None = None
    reject_on: tuple[str, ...] = ("NG",)
    spool_dir: str | None = None
    stats_interval_s: float = 10.0
    stats_file: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"pipeline backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise ConfigError(f"pipeline queue_size {self.queue_size!r} must be a positive integer")
        if self.max_wait_ms < 0 or self.stats_interval_s <= 0:
            raise ConfigError(
                f"pipeline max_wait_ms {self.max_wait_ms!r} must be >= 0 and stats interval "
                f"{self.stats_interval_s!r} > 0"
            )
        if self.reject_webhook and self.reject_command:
            raise ConfigError("pipeline reject hook: give either 'webhook' or 'command', not both")
        if self.source_kind not in SOURCE_KINDS:
            raise ConfigError(f"pipeline source kind {self.source_kind!r} is not one of {', '.join(SOURCE_KINDS)}")
        if self.device not in DEVICES:
            raise ConfigError(f"pipeline device {self.device!r} is not one of {', '.join(DEVICES)}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"pipeline batch_size {self.batch_size!r} must be a positive integer")

    @classmethod
    def from_yaml(cls, path: Path) -> PipelineSpec:
        """Read a pipeline file; the nested ``source:``/``sinks:`` sections are flattened here.

        Layout::

            name: batch-folder
            station: {name: station-1, line: line-1}
            source: {kind: folder, path: sample_data/incoming}
            model: {path: var/models/demo, threshold: 0.5}
            inference: {batch_size: 16, device: auto, max_wait_ms: 50, queue_size: 64}
            sinks: {database: null, csv: var/out/results.csv, jsonl: null, ng_dir: var/out/ng,
                    reject: {webhook: http://plc-gw/reject, decisions: [NG]}, spool_dir: var/spool}
            stats: {interval_s: 10, file: var/stats/batch-folder.json}

        Unknown keys in any section are rejected by name.
        """
        data = read_yaml(Path(path))
        allowed = {"name", "station", "source", "model", "inference", "sinks", "stats", "description"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(
                f"pipeline file {str(path)!r} has unknown section(s) {unknown}; allowed: {sorted(allowed)}"
            )
        for required in ("source", "model"):
            if not isinstance(data.get(required), dict):
                raise ConfigError(f"pipeline file {str(path)!r} needs a {required!r} mapping")
        for section, keys in _SECTION_KEYS.items():
            value = data.get(section) or {}
            if not isinstance(value, dict):
                raise ConfigError(f"pipeline file {str(path)!r}: {section!r} must be a mapping")
            bad = sorted(set(value) - keys)
            if bad:
                raise ConfigError(
                    f"pipeline file {str(path)!r}: unknown key(s) {bad} in {section!r}; allowed: {sorted(keys)}"
                )
        source = data["source"]
        model = data["model"]
        station = data.get("station") or {}
        inference = data.get("inference") or {}
        sinks = data.get("sinks") or {}
        stats = data.get("stats") or {}
        reject = sinks.get("reject") or {}
        # "decisions", not "on": YAML 1.1 reads a bare ``on`` key as the boolean True.
        if not isinstance(reject, dict) or set(reject) - {"webhook", "command", "decisions"}:
            raise ConfigError(
                # Keys only: the values may hold the webhook's credentials.
                f"pipeline file {str(path)!r}: sinks.reject takes webhook / command / decisions, got "
                f"{sorted(map(str, reject)) if isinstance(reject, dict) else type(reject).__name__}"
            )
        if "path" not in source or "path" not in model:
            raise ConfigError(f"pipeline file {str(path)!r}: source.path and model.path are required")
        return cls(
            name=str(data.get("name") or Path(path).stem),
            source_kind=str(source.get("kind", "folder")),
            source=str(source["path"]),
            model=str(model["path"]),
            threshold=model.get("threshold"),
            review_band=None if model.get("review_band") is None else float(model["review_band"]),
            station=str(station.get("name", "station-1")),
            line=str(station.get("line", "line-1")),
            batch_size=int(inference.get("batch_size", 16)),
            device=str(inference.get("device", "auto")),
            database_url=sinks.get("database"),
            csv=sinks.get("csv"),
            ng_dir=sinks.get("ng_dir"),
            source_options={k: source[k] for k in _SOURCE_OPTIONS if k in source},
            live=source.get("live"),
            max_wait_ms=float(inference.get("max_wait_ms", 50.0)),
            queue_size=int(inference.get("queue_size", 64)),
            backend=str(model.get("backend", "torch")),
            onnx_path=model.get("onnx_path"),
            follow_active=bool(model.get("follow_active", False)),
            jsonl=sinks.get("jsonl"),
            save_ng_images=bool(sinks.get("save_ng_images", True)),
            reject_webhook=reject.get("webhook"),
            reject_command=reject.get("command"),
            reject_on=tuple(reject.get("decisions", ("NG",))),
            spool_dir=sinks.get("spool_dir"),
            stats_interval_s=float(stats.get("interval_s", 10.0)),
            stats_file=stats.get("file"),
        )


@dataclass(frozen=True)
class PromotionPolicy:
    """When a fine-tuned candidate may replace the active model (champion/challenger on one frozen test set).

    Attributes:
        false_reject_rate: the plant's operating point: share of good parts it accepts to reject.
        class_tolerance: largest drop in any defect class's detection rate (at that operating point) accepted.
        min_improvement: how much lower the candidate's escape rate must be; ties are broken by AUROC.
        auto_promote: promote a winning candidate at once; otherwise it stays a candidate for a person to promote.
    """

    false_reject_rate: float = 0.01
    class_tolerance: float = 0.05
    min_improvement: float = 0.0
    auto_promote: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.false_reject_rate < 1.0:
            raise ConfigError(f"false_reject_rate {self.false_reject_rate!r} must lie in [0, 1)")
        for name in ("class_tolerance", "min_improvement"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} {value!r} must lie in [0, 1]")


@dataclass(frozen=True)
class FinetuneSpec:
    """What a queued fine-tuning run does, stored as the run's ``config`` (and a schedule's, plus its own keys).

    Attributes:
        train: the training recipe.
        test_dir: frozen test set (class folders) both models are judged on; ``None`` holds out ``test_fraction``
            of the data folder by a hash of each file's path, so a file never moves between test and training.
        test_fraction: share held out when there is no ``test_dir``.
        use_reviews: add reviewed inspections (OK → good, NG → its defect class) to the training data.
        model_prefix: model versions are named ``<prefix>-run<id>``.
        promotion: the promotion policy.
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    test_dir: str | None = None
    test_fraction: float = 0.2
    use_reviews: bool = True
    model_prefix: str = "finetune"
    promotion: PromotionPolicy = field(default_factory=PromotionPolicy)

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction {self.test_fraction!r} must lie strictly between 0 and 1")
        if not self.model_prefix or "/" in self.model_prefix:
            raise ConfigError(f"model_prefix {self.model_prefix!r} must be a non-empty name without '/'")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the database's JSON column."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneSpec:
        """Build from a dict, rejecting unknown keys by name (nested ``train`` and ``promotion`` too)."""
        check_known_keys(cls, values, "fine-tuning")
        policy_values = dict(values.get("promotion") or {})
        check_known_keys(PromotionPolicy, policy_values, "promotion")
        rest = {k: v for k, v in values.items() if k not in ("train", "promotion")}
        return cls(
            train=TrainConfig.from_dict(dict(values.get("train") or {})),
            promotion=PromotionPolicy(**policy_values),
            **rest,
        )
