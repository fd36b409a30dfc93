"""Hot model swap for running pipelines: follow the database's active model and switch between batches.

``HotSwapInspector`` stands in for an ``Inspector``: a pipeline calls ``poll()`` between batches (for example from
its progress callback) and predicts with whatever model is active at that moment. The new model is loaded while the
old one keeps inspecting (in a background thread, unless ``background=False``) and swapped in only at a batch
boundary, so every frame of a batch is decided by one model and no frame is dropped or held for the reload.

The threshold the line decides with is the active version's row in ``model_versions`` (what the dashboard's Models
page sets): each poll re-reads it and a change applies from the next batch, like a promotion, unless the pipeline
pins its own ``threshold:``. ``bind_to_database`` gives a pipeline that does not follow the active model its version
row's threshold once, at the start.

It lives in the engine (beside the ``Inspector`` it wraps) and reads the database only through the two methods of
``ModelVersionSource`` that a storage ``Repository`` has, so the engine imports no storage and the inspection job
(``app.jobs``) reaches it without importing the lifecycle layer above it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspect_app.config.pipeline import PipelineSpec
from inspect_app.engine.infer import Inspector
from inspect_app.errors import ConfigError, StorageError
from inspect_app.records import ModelVersion, Prediction

logger = logging.getLogger(__name__)

__all__ = ["HotSwapInspector", "Loader", "ModelVersionSource", "apply_version_threshold", "bind_to_database",
           "inspector_loader"]

Loader = Callable[[ModelVersion], Inspector]
# ``Inspector.threshold_source`` of a threshold read from the version row.
VERSION_ROW = "model_versions"


class ModelVersionSource(Protocol):
    """Where the active model version and a version's row are read (a storage ``Repository`` is one)."""

    def active_model(self) -> ModelVersion | None:
        """The active model version, or ``None`` before the first promotion."""

    def get_model_version(self, name: str) -> ModelVersion | None:
        """The model version called ``name``, or ``None``."""


def apply_version_threshold(inspector: Inspector, version: ModelVersion) -> bool:
    """Make ``inspector`` decide with ``version``'s stored threshold; a bad stored value keeps the current one.

    Returns:
        Whether the threshold changed.
    """
    try:
        return inspector.set_threshold(version.threshold, VERSION_ROW)
    except ConfigError as exc:
        logger.error("model %s: stored threshold not applied, keeping %.4g: %s", version.name, inspector.threshold,
                     exc)
        return False


class HotSwapInspector:
    """An ``Inspector`` look-alike that follows the active model version.

    Args:
        repository: where the active model is read.
        loader: builds an ``Inspector`` for a model version (device, threshold and review band are the pipeline's).
        poll_s: least seconds between two database reads.
        background: load a new model in a thread (pipelines) or inline at the next ``poll`` (tests, batch jobs).
        initial: the model version to start with; defaults to the active one.
        follow_threshold: decide with each version's stored threshold, re-read at every poll; ``False`` when the
            pipeline pins its own threshold (the loader applies it).
        current: an already loaded inspector of ``initial`` (saves loading the same checkpoint twice).

    Raises:
        LookupError: no ``initial`` and no active model.
    """

    def __init__(
        self,
        repository: ModelVersionSource,
        loader: Loader,
        poll_s: float = 10.0,
        background: bool = True,
        initial: ModelVersion | None = None,
        follow_threshold: bool = True,
        current: Inspector | None = None,
    ) -> None:
        """Load the starting model."""
        self.repository = repository
        self.loader = loader
        self.poll_s = poll_s
        self.background = background
        version = initial or repository.active_model()
        if version is None:
            raise LookupError("no active model version; train one or promote one first")
        self.version = version
        self.follow_threshold = follow_threshold
        self.current = current if current is not None and current.card.name == version.name else loader(version)
        if follow_threshold:
            apply_version_threshold(self.current, version)
        self.swaps = 0
        self._last_poll = time.monotonic()
        self._pending: tuple[ModelVersion, Inspector] | None = None
        self._loading: str | None = None
        self._lock = threading.Lock()

    # the Inspector interface the pipelines use -------------------------------------------------------------------

    @property
    def card(self) -> Any:
        """The current model's card."""
        return self.current.card

    @property
    def threshold(self) -> float:
        """The current decision threshold."""
        return self.current.threshold

    @property
    def threshold_source(self) -> str:
        """Where the current threshold comes from (``model_versions``, ``model card`` or ``given``)."""
        return self.current.threshold_source

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Predictions of the current model (never swapped in the middle of a batch)."""
        return self.current.predict(images)

    # swapping ----------------------------------------------------------------------------------------------------

    def poll(self, force: bool = False) -> bool:
        """Between batches: swap in a loaded new model, or start loading one if the active version changed.

        Returns:
            Whether the model was swapped by this call.
        """
        swapped = self._swap_if_ready()
        if not force and time.monotonic() - self._last_poll < self.poll_s:
            return swapped
        self._last_poll = time.monotonic()
        try:
            active = self.repository.active_model()
        except StorageError as exc:
            # A database outage must not stop the line: keep deciding with the current model, ask again next poll.
            logger.warning("active model not read, %s keeps deciding: %s", self.version.name, exc)
            return swapped
        if active is None:
            return swapped
        if active.name == self.version.name:
            # The same model, perhaps with a threshold set on the dashboard since: applied between batches too.
            self.version = active
            if self.follow_threshold:
                apply_version_threshold(self.current, active)
            return swapped
        if active.name == self._loading:
            return swapped
        self._loading = active.name
        if self.background:
            threading.Thread(target=self._load, args=(active,), name=f"load-{active.name}", daemon=True).start()
            return swapped
        self._load(active)
        return self._swap_if_ready() or swapped

    def _load(self, version: ModelVersion) -> None:
        """Build the new inspector; on failure keep the old model and try again at a later poll."""
        try:
            inspector = self.loader(version)
        except Exception:
            logger.exception("cannot load model %s from %s; keeping %s", version.name, version.path, self.version.name)
            with self._lock:
                self._loading = None
            return
        with self._lock:
            self._pending = (version, inspector)

    def _swap_if_ready(self) -> bool:
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None:
                return False
            self._loading = None
        old = self.version.name
        version, inspector = pending
        if self.follow_threshold:
            # The row as it is now: the threshold may have been changed while the model loaded.
            try:
                version = self.repository.get_model_version(version.name) or version
            except StorageError as exc:
                logger.warning("threshold of %s not re-read (the one read before loading decides): %s", version.name,
                               exc)
            apply_version_threshold(inspector, version)
        self.version, self.current = version, inspector
        self.swaps += 1
        logger.info("active model changed: %s → %s (swapped between batches; threshold %.4g from %s)", old,
                    self.version.name, inspector.threshold, inspector.threshold_source)
        return True


def inspector_loader(
    device: str = "auto", threshold: float | None = None, review_band: float | None = None, backend: str = "torch"
) -> Loader:
    """A ``Loader`` that opens a model version's checkpoint folder with the pipeline's decision settings.

    With ``backend="onnx"`` every version runs on onnxruntime like the one the pipeline started with, classifier or
    good-only: a promoted version whose folder has no exported graph yet is exported (and checked) first.
    """
    from inspect_app.engine.onnx_backend import load_inspector
    from inspect_app.models.export import ONNX_FILE, export_model

    def load(version: ModelVersion) -> Inspector:
        model_dir = Path(version.path)
        if backend == "onnx":
            if not (model_dir / ONNX_FILE).is_file():
                logger.info("exporting %s to ONNX before the swap", version.name)
                export_model(model_dir)
            return load_inspector(model_dir, backend="onnx", threshold=threshold, review_band=review_band)
        return load_inspector(model_dir, backend="torch", device=device, threshold=threshold,
                              review_band=review_band)

    return load


def bind_to_database(
    inspector: Inspector, repository: ModelVersionSource, version: ModelVersion, spec: PipelineSpec
) -> Inspector | HotSwapInspector:
    """The inspector a pipeline decides with: its threshold from the version row, following the active model if asked.

    A ``threshold:`` in the pipeline wins over the row (and is logged as such). With ``spec.follow_active`` the
    result is a ``HotSwapInspector`` that re-reads the active version (model and threshold) between batches.

    Args:
        inspector: the inspector loaded from ``spec.model``.
        repository: the plant database.
        version: ``spec.model``'s version, registered in ``repository``.
        spec: the pipeline.
    """
    if spec.threshold is not None:
        logger.info("threshold %.4g from the pipeline's model.threshold; the stored threshold of model versions is "
                    "not used", spec.threshold)
    if spec.follow_active:
        # Promotions reach the running pipeline between batches, without a restart and without losing frames.
        active = repository.active_model() or repository.get_model_version(version.name) or version
        loader = inspector_loader(spec.device, spec.threshold, spec.review_band, spec.backend)
        return HotSwapInspector(repository, loader, initial=active, follow_threshold=spec.threshold is None,
                                current=inspector)
    if spec.threshold is None:
        apply_version_threshold(inspector, repository.get_model_version(version.name) or version)
    logger.info("model %s decides with threshold %.4g (%s)", inspector.card.name, inspector.threshold,
                inspector.threshold_source)
    return inspector
