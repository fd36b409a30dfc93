"""The check after a good-only fit: the saved model, loaded back, must score as the calibrated model did."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inspect_app.data.image_io import read_image
from inspect_app.engine.anomaly_scoring import load_anomaly_model, score_raw
from inspect_app.errors import ReloadCheckError

logger = logging.getLogger(__name__)

# Images scored again by the reloaded model after a fit (bank images, and held-out ones each).
RELOAD_SAMPLE = 8
# Scores of the reloaded model may differ from the calibrated ones by this share of (threshold - centre): exactly
# the same computation must agree to float rounding; the search the line uses (HNSW) to a small part of the margin.
EXACT_TOLERANCE = 1e-3
SEARCH_TOLERANCE = 0.05


def check_reload(model_dir: Path, calib: dict[str, Any], expected: Sequence[tuple[Path, float]]) -> None:
    """Load the saved model back and check that it scores as the calibrated model did; raise if it does not.

    Each image is scored twice by the reloaded model: with exact search, which must agree with the model in memory
    to float rounding (the file holds the bank, the per-position scale and the recipe), and with the search the
    line will use (chosen and checked at load time), which must agree within ``SEARCH_TOLERANCE`` of the score
    margin: an approximate search that misses the nearest rows would call good parts NG although the calibration
    promised otherwise.

    Args:
        model_dir: the saved checkpoint.
        calib: the calibration (its raw threshold and centre set the tolerance).
        expected: (image, exact score of the model in memory) pairs: bank images and held-out ones.

    Raises:
        ReloadCheckError: naming the image, both scores and the tolerance.
    """
    # On the CPU, where the approximate search runs (an accelerator searches exactly).
    model, _, config = load_anomaly_model(model_dir, "cpu")
    margin = max(calib["raw_threshold"] - calib["raw_center"], 1e-6)
    exact = config.with_overrides(nn_search="exact")
    line = model.search_in_use
    for path, want in expected:
        image = read_image(path)
        for what, scoring, tolerance in (("exact search", exact, EXACT_TOLERANCE),
                                         (f"the line's search, {line}", config, SEARCH_TOLERANCE)):
            got = score_raw(model, [image], scoring)[0].score
            if abs(got - want) > tolerance * margin + 1e-5 * abs(want):
                raise ReloadCheckError(
                    f"the saved model {str(model_dir)!r} scores {path} {got:.4f} ({what}), the calibrated model "
                    f"{want:.4f}: more than {tolerance:g} x the threshold margin {margin:.4f} apart; it would not "
                    "decide as its calibration promised"
                )
    logger.info("reload check: %d images score as calibrated (search: %s)", len(expected), line)
