"""Hot model swap for running pipelines: follow the database's active model and switch between batches.

``HotSwapInspector`` stands in for an ``Inspector``: a pipeline calls ``poll()`` between batches (for example from
its progress callback) and predicts with whatever model is active at that moment. The new model is loaded while the
old one keeps inspecting (in a background thread, unless ``background=False``) and swapped in only at a batch
boundary, so every frame of a batch is decided by one model and no frame is dropped or held for the reload.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inspect_app.engine.infer import Inspector
from inspect_app.records import ModelVersion, Prediction
from inspect_app.storage.repository import Repository

logger = logging.getLogger(__name__)

Loader = Callable[[ModelVersion], Inspector]


class HotSwapInspector:
    """An ``Inspector`` look-alike that follows the active model version.

    Args:
        repository: where the active model is read.
        loader: builds an ``Inspector`` for a model version (device, threshold and review band are the pipeline's).
        poll_s: least seconds between two database reads.
        background: load a new model in a thread (pipelines) or inline at the next ``poll`` (tests, batch jobs).
        initial: the model version to start with; defaults to the active one.

    Raises:
        LookupError: no ``initial`` and no active model.
    """

    def __init__(
        self,
        repository: Repository,
        loader: Loader,
        poll_s: float = 10.0,
        background: bool = True,
        initial: ModelVersion | None = None,
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
        self.current = loader(version)
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
        active = self.repository.active_model()
        if active is None or active.name == self.version.name or active.name == self._loading:
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
        self.version, self.current = pending
        self.swaps += 1
        logger.info("active model changed: %s → %s (swapped between batches)", old, self.version.name)
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
