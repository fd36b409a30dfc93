"""Fitting good-only anomaly models: the fit and its calibration (thresholds, units, review band), and updates.

The bank itself is filled by ``engine.anomaly_bank``, the saved model checked by ``engine.anomaly_reload``; test-set
evaluation lives in ``engine.anomaly_eval`` and scoring, which the line needs alone, in ``engine.anomaly_scoring``.

Scores are normalised per model so that 0.5 is always the decision threshold and nothing ties:
``0.5 + 0.5 x / (1 + |x|)`` with ``x = 4 (raw - t) / (t - c)`` (``normalize``), ``t`` the raw threshold (a false-reject
rate on held-out good images through a fitted tail, ``engine.tail``, or an escape rate on labelled defects) and ``c``
the median raw score of held-out good images, which maps to 0.1. The raw score travels beside it. The default REVIEW
band lies below the threshold, from the score that ``review_rate`` of the held-out good images reach. Maps get the same
treatment with their own ``t`` and ``c`` (from the held-out images' hottest pixels), because the image score, a mean
over the hottest share of the map, sits below the map's peak.

Held-out images also go into the bank by default and are scored leave-one-out, with the bank rows that came from
them masked: on Magnetic Tile the 20 % more coverage was worth more than any other single setting (see RESULTS).
Their unscaled patch distances also give each position of a tile's patch grid its own scale (``position_scale``),
which the model divides by from then on, before the threshold is set from their scaled scores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from inspect_app.data.anomaly_sets import GoodOnlyData, scan_good_only, split_holdout
from inspect_app.data.folders import fingerprint
from inspect_app.data.image_io import read_image
from inspect_app.engine.anomaly_bank import extend_bank, read_batches
from inspect_app.engine.anomaly_config import (
    ANOMALY_CLASS,
    ANOMALY_KIND,
    GEOMETRY_SAMPLE,
    AnomalyConfig,
    choose_geometry,
)
from inspect_app.engine.anomaly_eval import evaluate_anomaly as evaluate_anomaly  # re-export: callers import it here
from inspect_app.engine.anomaly_reload import RELOAD_SAMPLE, check_reload
from inspect_app.engine.anomaly_scoring import (
    MIN_SCALE_TILES,
    SCORE_UNITS,
    RawScore,
    TileGrids,
    normalize,
    patch_grids,
    position_scale,
    score_raw,
    scores_from_grids,
)
from inspect_app.engine.anomaly_scoring import load_anomaly_model as load_anomaly_model  # re-export, as above
from inspect_app.engine.device import resolve_device
from inspect_app.engine.metrics import roc_auc, threshold_for_escape_rate
from inspect_app.engine.progress import ProgressFn
from inspect_app.engine.tail import false_reject_interval, review_edge, tail_threshold
from inspect_app.errors import ConfigError, DatasetError
from inspect_app.models.anomaly import PatchCore
from inspect_app.models.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from inspect_app.models.factory import backbone_normalization
from inspect_app.records import GOOD_CLASS

logger = logging.getLogger(__name__)


def calibration(
    good_scores: Sequence[float],
    defect_scores: Sequence[float],
    config: AnomalyConfig,
    good_peaks: Sequence[float] = (),
) -> dict[str, Any]:
    """Raw threshold and centre: from labelled defects (target escape rate) when there are any, else from good ones.

    Args:
        good_scores: image scores of held-out good images.
        defect_scores: image scores of labelled defects (may be empty).
        config: the recipe (target rates).
        good_peaks: the hottest map value of each held-out good image; sets the map's own units (``raw_map_*``),
            since a mean over the hottest pixels sits lower than the hottest pixel itself.

    Returns:
        ``raw_threshold``, ``raw_center``, ``threshold_source``, the rates measured on the calibration images and,
        with ``good_peaks``, ``raw_map_threshold`` and ``raw_map_center``.
    """
    good = np.asarray(good_scores, dtype=np.float64)
    defects = np.asarray(defect_scores, dtype=np.float64)
    if defects.size:
        threshold = threshold_for_escape_rate(defects, config.escape_rate)
        source = f"escape rate {config.escape_rate} on {defects.size} labelled defects"
    else:
        threshold, method = tail_threshold(good, config.false_reject_rate)
        source = f"false-reject rate {config.false_reject_rate} on {good.size} held-out good images ({method})"
    center = float(np.median(good))
    out: dict[str, Any] = {
        "raw_threshold": float(threshold),
        "raw_center": center,
        "threshold_source": source,
        "holdout_false_reject_rate": float((good >= threshold).mean()),
        # What a plant should expect on new good parts, and how sure the calibration can be of it.
        "expected_false_reject_rate": config.false_reject_rate if not defects.size else None,
        "false_reject_interval": false_reject_interval(good, float(threshold), config.seed),
        "review_band": 0.0,
        "score_units": SCORE_UNITS,
    }
    if config.review_rate > 0.0 and good.size:
        edge = review_edge(good, config.review_rate)
        if edge < threshold:
            # The band in normalised units: from the edge's score up to the threshold at 0.5.
            out["review_band"] = float(0.5 - normalize(edge, center, float(threshold)))
            out["raw_review_edge"] = float(edge)
    if defects.size:
        out["calibration_escape_rate"] = float((defects < threshold).mean())
        if good.size and out["holdout_false_reject_rate"] > max(0.1, 5 * config.false_reject_rate):
            # A plant would otherwise learn this from the reject bin: the defects given look like good parts here.
            logger.warning("the threshold for escape rate %s calls %.1f %% of the %d held-out good images NG; the "
                           "labelled defects overlap the good parts (more good images, a higher escape_rate, or no "
                           "defects and a false_reject_rate instead)", config.escape_rate,
                           100 * out["holdout_false_reject_rate"], good.size)
    if len(good_peaks):
        peaks = np.asarray(good_peaks, dtype=np.float64)
        out["raw_map_threshold"] = float(tail_threshold(peaks, config.false_reject_rate)[0])
        out["raw_map_center"] = float(np.median(peaks))
    return out


@dataclass(frozen=True)
class AnomalyFitResult:
    """What a finished good-only fit produced.

    Attributes:
        model_dir: the checkpoint folder.
        card: the saved model card.
        seconds: wall time.
        timings: seconds per phase (bank, calibration).
    """

    model_dir: Path
    card: ModelCard
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def _raw_scores(model: PatchCore, paths: Sequence[Path], config: AnomalyConfig) -> list[RawScore]:
    return [r for batch in read_batches(paths, config.batch_size) for r in score_raw(model, batch, config)]


def _raw_grids(model: PatchCore, paths: Sequence[Path], config: AnomalyConfig) -> list[TileGrids]:
    return [patch_grids(model, batch, config, scaled=False) for batch in read_batches(paths, config.batch_size)]


def _leave_one_out_grids(
    model: PatchCore, paths: Sequence[Path], owners: Sequence[int] | torch.Tensor, bank_owners: torch.Tensor,
    config: AnomalyConfig,
) -> list[TileGrids]:
    """Unscaled patch distances of images that are in the bank, each without its own bank rows (as if held out)."""
    out = []
    for path, owner in zip(paths, owners, strict=True):
        own_rows = (bank_owners == int(owner)).to(model.memory_bank.device)
        exclude: torch.Tensor | None = own_rows
        if bool(own_rows.all()):
            # A bank made of this one image only: nothing else to compare with, so score it as it is.
            logger.warning("%s: every bank row comes from this image; scored without leaving it out", path)
            exclude = None
        out.append(patch_grids(model, [read_image(path)], config, exclude=exclude, scaled=False))
    return out


def _calibrated_scores(model: PatchCore, held_out: Sequence[TileGrids], config: AnomalyConfig) -> list[RawScore]:
    """Set the model's patch scale from held-out good images (when the recipe normalises positions), then score them.

    With too few tiles for a scale, the model keeps the one it has (none for a new model).
    """
    if config.position_norm:
        scale = position_scale(held_out)
        if scale is None:
            logger.info("%d held-out tiles are too few for a per-position scale (need %d); %s",
                        sum(g.grids.shape[0] for g in held_out), MIN_SCALE_TILES,
                        "keeping the model's" if model.patch_scale.numel() else "all positions count alike")
        else:
            model.set_patch_scale(scale)
    return [
        r for g in held_out
        for r in scores_from_grids(dataclasses.replace(g, grids=model.scale_patches(g.grids)), config)
    ]


def _scale_range(model: PatchCore) -> list[float] | None:
    """Lowest and highest per-position scale, for the card (``None`` without one)."""
    if model.patch_scale.numel() == 0:
        return None
    return [round(float(model.patch_scale.min()), 4), round(float(model.patch_scale.max()), 4)]


def _card(
    name: str, config: AnomalyConfig, mean: Sequence[float], std: Sequence[float], anomaly: dict[str, Any],
    metrics: dict[str, Any], data_fingerprint: str | None,
) -> ModelCard:
    return ModelCard(
        name=name, kind=ANOMALY_KIND, backbone=config.backbone, classes=(GOOD_CLASS, ANOMALY_CLASS),
        input_size=config.input_size, mean=tuple(mean), std=tuple(std), threshold=0.5,
        review_band=float(anomaly.get("review_band", 0.0)), metrics=metrics,
        data_fingerprint=data_fingerprint, train_config=config.to_dict(), anomaly=anomaly,
    )


def fit_anomaly(
    data: GoodOnlyData | Path,
    run_dir: Path,
    config: AnomalyConfig | None = None,
    name: str | None = None,
    progress: ProgressFn | None = None,
) -> AnomalyFitResult:
    """Fit a good-only anomaly model and save it as a checkpoint (``safetensors`` bank + JSON model card).

    Args:
        data: a ``GoodOnlyData`` or a folder (see ``scan_good_only``).
        run_dir: checkpoint folder to create.
        config: the recipe; defaults to ``AnomalyConfig()``.
        name: model version name; defaults to the folder name.
        progress: called with a dict after each phase.
    """
    start = time.perf_counter()
    config = config or AnomalyConfig()
    data = data if isinstance(data, GoodOnlyData) else scan_good_only(Path(data))
    step = max(1, len(data.good) // GEOMETRY_SAMPLE)
    config, geometry = choose_geometry([read_image(p).shape[:2] for p in data.good[::step]], config)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    bank_paths, held_out = split_holdout(data.good, config.holdout_fraction, config.seed,
                                         at_least=config.min_calibration_images if config.holdout_in_bank else 1,
                                         allow_all=config.holdout_in_bank)
    if config.holdout_in_bank:
        # The held-out images join the bank last (image ids len(bank_paths)...) and are scored leave-one-out.
        bank_paths = bank_paths + held_out
    logger.info("fitting %s anomaly bank on %d good images (%d scored for the threshold%s, %d labelled defects), "
                "device %s", config.backbone, len(bank_paths), len(held_out),
                ", leave-one-out" if config.holdout_in_bank else "", len(data.defects), device)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=True), encoding="utf-8")
    (run_dir / "split_bank.txt").write_text("\n".join(str(p) for p in bank_paths) + "\n", encoding="utf-8")
    (run_dir / "split_holdout.txt").write_text("\n".join(str(p) for p in held_out) + "\n", encoding="utf-8")

    mean, std = backbone_normalization(config.backbone)
    model = PatchCore(config.backbone, mean, std, config.layers, config.neighbourhood).to(device)
    fitted = extend_bank(model, read_batches(bank_paths, config.batch_size), config)
    patches = fitted.patches
    t_bank = time.perf_counter() - start
    if progress is not None:
        progress({"phase": "bank", "patches": patches, "bank_rows": int(model.memory_bank.shape[0])})
    if config.holdout_in_bank:
        first = len(bank_paths) - len(held_out)
        grids = _leave_one_out_grids(model, held_out, range(first, len(bank_paths)), fitted.owners, config)
    else:
        grids = _raw_grids(model, held_out, config)
    good = _calibrated_scores(model, grids, config)
    good_scores = [r.score for r in good]
    defect_scores = [r.score for r in _raw_scores(model, [p for p, _ in data.defects], config)]
    calib = calibration(good_scores, defect_scores, config, good_peaks=[r.peak for r in good])
    t_calib = time.perf_counter() - start - t_bank
    anomaly = {
        **calib, "bank_rows": int(model.memory_bank.shape[0]), "patches_seen": patches,
        "bank_mb": model.bank_bytes / 2**20, "train_images": len(bank_paths), "holdout_images": len(held_out),
        "patch_scale_range": _scale_range(model), "geometry": geometry,
    }
    metrics: dict[str, Any] = {"holdout_false_reject_rate": calib["holdout_false_reject_rate"]}
    if data.defects:
        metrics["auroc_good_vs_defect"] = roc_auc([False] * len(good_scores) + [True] * len(defect_scores),
                                                  good_scores + defect_scores)
    items = [(p, GOOD_CLASS) for p in data.good] + list(data.defects)
    card = _card(name or run_dir.name, config, mean, std, anomaly, metrics, fingerprint(items))
    sample = [*bank_paths[:: max(1, len(bank_paths) // RELOAD_SAMPLE)][:RELOAD_SAMPLE],
              *held_out[:: max(1, len(held_out) // RELOAD_SAMPLE)][:RELOAD_SAMPLE]]
    expected = [r.score for r in _raw_scores(model, sample, config.with_overrides(nn_search="exact"))]
    save_checkpoint(run_dir, model, card)
    (run_dir / "calibration_scores.json").write_text(json.dumps(
        {"held_out": [str(p) for p in held_out], "raw_scores": good_scores}, indent=1), encoding="utf-8")
    check_reload(run_dir, calib, list(zip(sample, expected, strict=True)))
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, **anomaly}, indent=2), encoding="utf-8")
    seconds = time.perf_counter() - start
    logger.info("anomaly model %s: %d bank rows (%.1f MB) from %d patches in %.1f s", card.name,
                anomaly["bank_rows"], anomaly["bank_mb"], patches, seconds)
    return AnomalyFitResult(run_dir, card, seconds, {"bank_s": t_bank, "calibration_s": t_calib})


def update_anomaly(
    model_dir: Path,
    new_good: Sequence[Path],
    out_dir: Path | None = None,
    recalibrate_with: Sequence[Path] = (),
    name: str | None = None,
) -> AnomalyFitResult:
    """Add good images to an existing anomaly model without rebuilding its bank.

    The existing rows stay; new rows are chosen greedily among the new patches that the bank does not cover yet.
    With ``recalibrate_with`` (held-out good images) the threshold, and the per-position scale when there are enough
    of their tiles, are set again; otherwise both are kept, which can only make the model more lenient on good parts
    since adding normal patches never raises a distance.

    Args:
        model_dir: checkpoint folder of a ``patchcore`` model.
        new_good: new defect-free images.
        out_dir: where to save the updated model; defaults to ``model_dir`` (in place).
        recalibrate_with: held-out good images for a new threshold.
        name: new model version name; defaults to the output folder name.
    """
    start = time.perf_counter()
    model, card = load_checkpoint(Path(model_dir), "cpu")
    if card.kind != ANOMALY_KIND:
        raise ConfigError(f"{model_dir} holds a {card.kind!r} model; only {ANOMALY_KIND!r} models can be updated")
    if not isinstance(model, PatchCore):  # the card says good-only: weights of another model cannot be extended
        raise ConfigError(f"{model_dir} has a {ANOMALY_KIND!r} card but holds a {type(model).__name__}")
    if not new_good:
        raise DatasetError("update_anomaly needs at least one new good image")
    config = AnomalyConfig.from_card(card.train_config)
    before = int(model.memory_bank.shape[0])
    patches = extend_bank(model, read_batches(list(new_good), config.batch_size), config, incremental=True).patches
    anomaly = dict(card.anomaly)
    anomaly.update(bank_rows=int(model.memory_bank.shape[0]), bank_mb=model.bank_bytes / 2**20,
                   patches_seen=int(anomaly.get("patches_seen", 0)) + patches,
                   train_images=int(anomaly.get("train_images", 0)) + len(new_good))
    if recalibrate_with:
        scores = _calibrated_scores(model, _raw_grids(model, list(recalibrate_with), config), config)
        anomaly.update(calibration([r.score for r in scores], [], config, good_peaks=[r.peak for r in scores]),
                       patch_scale_range=_scale_range(model))
    out_dir = Path(out_dir) if out_dir is not None else Path(model_dir)
    new_card = card.replace(name=name or (out_dir.name if out_dir != Path(model_dir) else card.name),
                            anomaly=anomaly, review_band=float(anomaly.get("review_band", card.review_band)))
    save_checkpoint(out_dir, model, new_card)
    logger.info("updated %s: bank %d → %d rows from %d new patches", card.name, before, anomaly["bank_rows"], patches)
    return AnomalyFitResult(out_dir, new_card, time.perf_counter() - start)
