"""Fitting good-only anomaly models: streaming feature extraction, greedy coreset, thresholds, incremental update.

The memory bank is built in one streaming pass: patch descriptors of a few images at a time are reduced by a greedy
k-center coreset inside chunks that fit the CPU cache, and the union of those chunk coresets is reduced again to the
final size (composable coresets: covering every chunk covers their union). Only the selected rows are kept, so
memory grows with the coreset, not with every patch, and each greedy step works on a cache-sized chunk instead of
scanning every patch of the data set (see benchmarks/RESULTS.md for the measured difference).

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml

from inspect_app.data.folders import NO_GOOD_CLASS, find_good_class, fingerprint, list_images
from inspect_app.data.image_io import read_image
from inspect_app.engine.anomaly_config import (
    ANOMALY_CLASS,
    ANOMALY_KIND,
    GEOMETRY_SAMPLE,
    AnomalyConfig,
    ProgressFn,
    choose_geometry,
)
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
    tile_images,
    to_device,
)
from inspect_app.engine.coreset import BankBuilder
from inspect_app.engine.device import resolve_device
from inspect_app.engine.metrics import (
    auroc_per_class,
    costliest_samples,
    roc_auc,
    roc_auc_interval,
    threshold_for_escape_rate,
    threshold_for_false_reject,
)
from inspect_app.engine.tail import false_reject_interval, review_edge, tail_threshold
from inspect_app.errors import ConfigError, DatasetError, ReloadCheckError
from inspect_app.models.anomaly import PatchCore
from inspect_app.models.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from inspect_app.models.factory import backbone_normalization
from inspect_app.records import GOOD_CLASS

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class GoodOnlyData:
    """Images for a good-only fit.

    Attributes:
        good: defect-free images (bank + held-out calibration).
        defects: optional labelled defective images (path, class), used only for the escape-rate threshold.
    """

    good: tuple[Path, ...]
    defects: tuple[tuple[Path, str], ...] = ()


def scan_good_only(data_dir: Path, good_class: str | None = None) -> GoodOnlyData:
    """A folder of good images, or a class-folder data set whose good class holds the good images.

    In the class-folder case, every other class folder holds labelled defects.

    Args:
        data_dir: the folder.
        good_class: the good class folder's name; ``None`` finds it (``data.folders.find_good_class``).

    Raises:
        DatasetError: no images, or class folders none (or several) of which is named as the good one.
    """
    data_dir = Path(data_dir)
    subdirs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if data_dir.is_dir() else []
    if subdirs:
        names = [p.name for p in subdirs]
        if good_class == NO_GOOD_CLASS:
            raise DatasetError(f"{data_dir}: a good-only model needs good images; --good-class {NO_GOOD_CLASS} "
                               "leaves none")
        try:
            good_name = find_good_class(names, good_class)
        except DatasetError as exc:
            raise DatasetError(f"{data_dir}: {exc}; or pass a folder of good images only") from None
        good = tuple(list_images(data_dir / str(good_name)))
        defects = tuple((p, d.name) for d in subdirs if d.name != good_name for p in list_images(d))
    else:
        good = tuple(list_images(data_dir))
        defects = ()
    if len(good) < 2:
        raise DatasetError(f"{data_dir}: need at least 2 good images to fit and calibrate, found {len(good)}")
    return GoodOnlyData(good=good, defects=defects)


def split_holdout(
    paths: Sequence[Path], fraction: float, seed: int, at_least: int = 1, allow_all: bool = False
) -> tuple[list[Path], list[Path]]:
    """(bank, held-out) split of good images, reproducible from the seed and the sorted paths.

    Args:
        paths: the good images.
        fraction: share held out.
        seed: seed of the draw.
        at_least: hold out at least this many (as far as there are images).
        allow_all: every image may be held out (they all join the bank anyway); else one stays in the bank.
    """
    ordered = sorted(paths, key=str)
    n_hold = min(max(1, round(len(ordered) * fraction), at_least), len(ordered) - (0 if allow_all else 1))
    chosen = set(np.random.default_rng(seed).permutation(len(ordered))[:n_hold].tolist())
    return [p for i, p in enumerate(ordered) if i not in chosen], [p for i, p in enumerate(ordered) if i in chosen]


def _batches(paths: Sequence[Path], size: int) -> Iterator[list[np.ndarray]]:
    for i in range(0, len(paths), size):
        yield [read_image(p) for p in paths[i : i + size]]


@dataclass(frozen=True)
class BankFit:
    """What filling a memory bank saw.

    Attributes:
        patches: patch descriptors seen.
        owners: (N,) for every bank row, the index of its source image in the order the images came (a mirrored
            copy shares its image's index; rows of an older bank are -1).
    """

    patches: int
    owners: torch.Tensor


# Patches kept, with their exact distances, to check an approximate search whenever one is built (see
# ``PatchCore.set_probes``): 2048 x 520 float16 is 2 MB beside a bank of tens of MB.
PROBE_PATCHES = 2048


class ProbeSampler:
    """A uniform random sample of ``size`` rows from a stream of descriptor batches (reservoir by random keys)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.rows: torch.Tensor | None = None
        self.keys = torch.empty(0)

    def add(self, rows: torch.Tensor) -> None:
        """Offer (M, D) rows; the ``size`` with the smallest random keys so far are kept."""
        keys = torch.rand(rows.shape[0], generator=self.generator)
        if self.rows is not None and self.keys.numel() >= self.size:
            wanted = keys < self.keys.max()  # only rows that would displace a kept one are copied
            rows, keys = rows[wanted.to(rows.device)], keys[wanted]
        rows = rows.detach().float().cpu()
        pool = rows if self.rows is None else torch.cat([self.rows, rows])
        keys = torch.cat([self.keys, keys])
        keep = torch.argsort(keys)[: self.size]
        self.rows, self.keys = pool[keep], keys[keep]


@torch.inference_mode()
def extend_bank(
    model: PatchCore, images: Iterable[Sequence[np.ndarray]], config: AnomalyConfig, incremental: bool = False
) -> BankFit:
    """Fit (or, with ``incremental``, extend) the model's bank from batches of good images.

    The bank's search probes are drawn from the same patches (an update keeps a share of the old ones).
    """
    device = model.mean.device
    builder = BankBuilder(model.feature_dim, config, existing=model.memory_bank if incremental else None)
    probes = ProbeSampler(PROBE_PATCHES, config.seed)
    if incremental and model.probe_queries.shape[0]:
        probes.add(model.probe_queries.float())
    first = 0
    for batch in images:
        ids = list(range(first, first + len(batch)))
        first += len(batch)
        if config.flip_augment:
            batch = [*batch, *(np.ascontiguousarray(im[:, ::-1]) for im in batch),
                     *(np.ascontiguousarray(im[::-1]) for im in batch)]
            ids = ids * 3
        tiles, layout = tile_images(batch, config)
        tile_ids = torch.tensor([i for i, (count, _, _) in zip(ids, layout, strict=True) for _ in range(count)])
        for i in range(0, len(tiles), config.batch_size):
            emb = model.embed(to_device(tiles[i : i + config.batch_size], device))
            owners = tile_ids[i : i + config.batch_size].repeat_interleave(emb.shape[2] * emb.shape[3])
            rows = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
            builder.add(rows, owners)
            probes.add(rows)
    model.set_bank(builder.finish())
    if probes.rows is not None:
        model.set_probes(probes.rows)
    assert builder.owners is not None and builder.owners.numel() == model.memory_bank.shape[0]
    return BankFit(builder.patches_seen, builder.owners)


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
    return [r for batch in _batches(paths, config.batch_size) for r in score_raw(model, batch, config)]


def _raw_grids(model: PatchCore, paths: Sequence[Path], config: AnomalyConfig) -> list[TileGrids]:
    return [patch_grids(model, batch, config, scaled=False) for batch in _batches(paths, config.batch_size)]


def _leave_one_out_grids(
    model: PatchCore, paths: Sequence[Path], owners: Sequence[int] | torch.Tensor, bank_owners: torch.Tensor,
    config: AnomalyConfig,
) -> list[TileGrids]:
    """Unscaled patch distances of images that are in the bank, each without its own bank rows (as if held out)."""
    out = []
    for path, owner in zip(paths, owners, strict=True):
        exclude = (bank_owners == int(owner)).to(model.memory_bank.device)
        if bool(exclude.all()):
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
    fitted = extend_bank(model, _batches(bank_paths, config.batch_size), config)
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


# Images scored again by the reloaded model after a fit (bank images, and held-out ones each).
RELOAD_SAMPLE = 8
# Scores of the reloaded model may differ from the calibrated ones by this share of (threshold - centre): exactly
# the same computation must agree to float rounding; the search the line uses (HNSW) to a small part of the margin.
EXACT_TOLERANCE = 1e-3
SEARCH_TOLERANCE = 0.05


def load_anomaly_model(folder: Path, device: str | torch.device = "cpu") -> tuple[PatchCore, ModelCard, AnomalyConfig]:
    """A saved good-only model ready to score as the line scores: its recipe from the card, its search built."""
    model, card = load_checkpoint(Path(folder), device)
    if card.kind != ANOMALY_KIND:
        raise ConfigError(f"{folder} holds a {card.kind!r} model, not a {ANOMALY_KIND!r} one")
    device = model.mean.device
    config = AnomalyConfig.from_card(card.train_config, device=device.type)
    model.configure_search(config.nn_search, config.hnsw_ef_search)
    model.prepare_search()  # the graph is built (and checked) at load time, not on the first frame of a live line
    return model, card, config


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
    if not new_good:
        raise DatasetError("update_anomaly needs at least one new good image")
    config = AnomalyConfig.from_card(card.train_config)
    before = int(model.memory_bank.shape[0])
    patches = extend_bank(model, _batches(list(new_good), config.batch_size), config, incremental=True).patches
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


# ------------------------------------------------------------------------------------------------------ evaluation
PIXEL_EVAL_SIDE = 192


def _eval_shape(shape: tuple[int, int], side: int = PIXEL_EVAL_SIDE) -> tuple[int, int]:
    """A smaller shape with the same aspect for pixel metrics (bounds memory over hundreds of images)."""
    factor = min(1.0, side / max(shape))
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def evaluate_anomaly(
    model: PatchCore,
    config: AnomalyConfig,
    test: Sequence[Any],
    false_reject_rate: float = 0.01,
    overlay_dir: Path | None = None,
    worst: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Image AUROC, pixel AUROC (when masks exist), escape rate at a false-reject rate, and worst-case overlays.

    Args:
        model: a fitted PatchCore.
        config: its recipe (tiling, smoothing).
        test: ``data.anomaly_sets.EvalImage`` items (path, label, mask).
        false_reject_rate: operating point set on the test's own good images, for the escape rate.
        overlay_dir: where to save map-on-image overlays of the worst good and defective images.
        worst: overlays per kind.
        progress: called with (done, total) after each batch.

    Returns:
        Plain JSON-able metrics; raw scores are kept under ``scores`` in test order.
    """
    from inspect_app.data.anomaly_sets import read_mask
    from inspect_app.data.image_io import write_image
    from inspect_app.engine.explain import overlay

    scores: list[float] = []
    peaks: list[float] = []
    pixel_scores: list[np.ndarray] = []
    pixel_truth: list[np.ndarray] = []
    has_masks = any(item.mask is not None for item in test)
    start = time.perf_counter()
    for i in range(0, len(test), config.batch_size):
        chunk = test[i : i + config.batch_size]
        images = [read_image(item.path) for item in chunk]
        for item, image, raw in zip(chunk, images, score_raw(model, images, config), strict=True):
            scores.append(raw.score)
            peaks.append(raw.peak)
            if has_masks:
                shape = _eval_shape(image.shape[:2])
                pixel_truth.append(read_mask(item.mask, shape).ravel())
                pixel_scores.append(cv2_resize(raw.heatmap, shape).ravel())
        if progress is not None:
            progress(min(i + config.batch_size, len(test)), len(test))
    seconds = time.perf_counter() - start
    is_defect = np.array([item.is_defect for item in test])
    values = np.asarray(scores)
    good = values[~is_defect]
    report: dict[str, Any] = {
        "images": len(test), "good": int((~is_defect).sum()), "defective": int(is_defect.sum()),
        "image_auroc": roc_auc(is_defect, values), "image_auroc_interval": roc_auc_interval(is_defect, values),
        "costliest": costliest_samples(is_defect, values, [str(item.path) for item in test]),
        "scoring_images_per_s": len(test) / seconds,
    }
    if good.size:
        threshold = threshold_for_false_reject(good, false_reject_rate)
        report["operating_point"] = {
            "false_reject_rate": float((good >= threshold).mean()), "target_false_reject_rate": false_reject_rate,
            "escape_rate": float((values[is_defect] < threshold).mean()) if is_defect.any() else None,
        }
    if has_masks and pixel_truth:
        report["pixel_auroc"] = roc_auc(np.concatenate(pixel_truth), np.concatenate(pixel_scores))
    report["image_auroc_per_class"] = auroc_per_class([item.label for item in test], values, GOOD_CLASS)
    if overlay_dir is not None:
        overlay_dir = Path(overlay_dir)
        overlay_dir.mkdir(parents=True, exist_ok=True)
        scale = max(max(peaks), 1e-6)
        # Worst cases: defects scored lowest (escapes first) and good parts scored highest (false rejects first).
        defects = sorted(np.flatnonzero(is_defect), key=lambda k: values[k])[:worst]
        goods = sorted(np.flatnonzero(~is_defect), key=lambda k: -values[k])[:worst]
        written = []
        for kind, indices in (("defect", defects), ("good", goods)):
            for rank, k in enumerate(indices):
                item = test[int(k)]
                image = read_image(item.path)
                raw = score_raw(model, [image], config)[0]
                path = overlay_dir / f"worst_{kind}_{rank}_{item.label}_{item.path.stem}.png"
                write_image(path, overlay(image, np.clip(raw.heatmap / scale, 0.0, 1.0)))
                written.append(str(path))
        report["overlays"] = written
    report["scores"] = [float(v) for v in values]
    return report


def cv2_resize(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (height, width)."""
    return cv2.resize(heatmap.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
