"""Good-only anomaly fitting: coreset, thresholds, normalisation, real fits on synthetic parts, updates, Inspector."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inspect_app.data.anomaly_sets import EvalImage, GoodOnlyData, scan_good_only
from inspect_app.data.image_io import write_image
from inspect_app.data.synthetic import synthesize
from inspect_app.engine.anomaly import calibration, fit_anomaly, update_anomaly
from inspect_app.engine.anomaly_config import LEGACY_CARD_DEFAULTS, AnomalyConfig
from inspect_app.engine.anomaly_eval import evaluate_anomaly
from inspect_app.engine.anomaly_scoring import (
    MIN_SCALE_TILES,
    TileGrids,
    denormalize,
    normalize,
    patch_grids,
    position_scale,
    score_raw,
    top_fraction_mean,
)
from inspect_app.engine.coreset import BankBuilder, greedy_coreset
from inspect_app.engine.infer import Inspector
from inspect_app.engine.metrics import roc_auc, threshold_for_escape_rate
from inspect_app.errors import ConfigError, DatasetError
from inspect_app.models import nn_search
from inspect_app.models.checkpoint import load_checkpoint
from inspect_app.records import Decision

SIZE = 96
SURFACE = "brushed"


def _samples(label: str, count: int, start: int) -> list:
    """Synthetic parts of one surface kind (the tests fit one product, as a plant would)."""
    out, seed = [], start
    while len(out) < count:
        sample = synthesize(label, np.random.default_rng(seed), SIZE)
        seed += 1
        if sample.surface == SURFACE:
            out.append(sample)
    return out


def test_greedy_coreset_keeps_outliers_and_the_requested_count() -> None:
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(3000, 8, generator=gen) * 0.1
    points[1234] = 50.0  # one rare but normal patch: a coreset must keep it, random sampling would not
    for chunk in (100_000, 500):
        idx = greedy_coreset(points, 60, chunk=chunk, oversample=4.0, seed=1)
        assert idx.numel() == 60 and idx.unique().numel() == 60
        assert 1234 in idx.tolist()
    assert greedy_coreset(points, 5000).numel() == 3000


def test_chunked_coreset_covers_almost_as_well_as_the_global_one() -> None:
    gen = torch.Generator().manual_seed(2)
    points = torch.randn(4000, 4, generator=gen)

    def radius(idx: torch.Tensor) -> float:
        return float(torch.cdist(points, points[idx]).min(dim=1).values.max())

    full = radius(greedy_coreset(points, 200, chunk=100_000))
    chunked = radius(greedy_coreset(points, 200, chunk=500, seed=3))
    assert chunked <= 2.0 * full


def test_incremental_bank_keeps_old_rows_and_adds_only_uncovered_patches() -> None:
    config = AnomalyConfig(coreset_ratio=0.1, coreset_dim=8, coreset_chunk=1000)
    gen = torch.Generator().manual_seed(0)
    old = torch.randn(100, 8, generator=gen)
    builder = BankBuilder(8, config, existing=old)
    novel = torch.randn(200, 8, generator=gen) + 30.0
    builder.add(torch.cat([old.repeat(3, 1), novel]))
    bank = builder.finish()
    assert torch.equal(bank[:100], old)
    added = bank[100:]
    assert added.shape[0] == 50  # 10 % of the 500 new patches
    assert (added.mean(dim=1) > 15.0).sum() >= 45  # nearly all from the uncovered cluster


def test_bank_rows_remember_their_source_image() -> None:
    config = AnomalyConfig(coreset_ratio=0.5, coreset_dim=4, coreset_chunk=64)
    builder = BankBuilder(4, config)
    gen = torch.Generator().manual_seed(3)
    # Image k's descriptors sit around k * 10 in every coordinate, so a row's value tells its source.
    added = [torch.randn(40, 4, generator=gen) + 10.0 * k for k in range(5)]
    for k, rows in enumerate(added):
        builder.add(rows, torch.full((40,), k))
    bank = builder.finish()
    assert builder.owners is not None and builder.owners.shape == (bank.shape[0],)
    # Gathered from several chunk coresets: every bank row is one of the added rows, exactly, and none twice.
    exact = torch.cdist(bank, torch.cat(added), compute_mode="donot_use_mm_for_euclid_dist")
    assert exact.min(dim=1).values.max() == 0.0
    assert torch.unique(bank, dim=0).shape[0] == bank.shape[0]
    assert torch.equal(torch.round(bank.mean(dim=1) / 10.0).long(), builder.owners)
    assert set(builder.owners.tolist()) == set(range(5))


def test_image_score_is_the_mean_of_the_hottest_share() -> None:
    values = torch.arange(100, dtype=torch.float32)
    assert top_fraction_mean(values, 0.0) == 99.0
    assert top_fraction_mean(values, 0.1) == pytest.approx(94.5)  # mean of 90..99
    assert top_fraction_mean(values, 1.0) == pytest.approx(49.5)
    with pytest.raises(ConfigError, match=r"score_top_fraction 1\.5"):
        AnomalyConfig(score_top_fraction=1.5)
    with pytest.raises(ConfigError, match=r"flat_field 2\.0"):
        AnomalyConfig(flat_field=2.0)


def test_cards_saved_before_an_option_existed_keep_their_behaviour() -> None:
    old = AnomalyConfig().to_dict()
    for key in LEGACY_CARD_DEFAULTS:
        del old[key]
    config = AnomalyConfig.from_card(old, device="cpu")
    assert config.score_top_fraction == 0.0 and config.holdout_in_bank is False and config.device == "cpu"
    assert config.flat_field == 0.0 and config.position_norm is False
    assert AnomalyConfig.from_card(AnomalyConfig().to_dict()) == AnomalyConfig()


def test_position_scale_is_each_positions_good_level_over_the_mean() -> None:
    grid = torch.ones(28, 28)
    grid[0] = 3.0  # good parts sit farther from the bank along the tile's top edge
    grid[14, 14] = 0.0  # and exactly on it at one position: the scale must not divide by zero there
    assert position_scale([TileGrids(grid.expand(MIN_SCALE_TILES - 1, 28, 28).clone(), [], 224)]) is None
    assert position_scale([]) is None
    scale = position_scale([TileGrids(grid.expand(20, 28, 28).clone(), [], 224)] * 2)
    assert scale is not None and scale.shape == (28, 28)
    assert float(scale.mean()) == pytest.approx(1.0, rel=0.1)
    assert float(scale[0].mean()) > 1.5 * float(scale[7:21, 7:21].mean())
    assert float(scale.min()) >= 0.25


def test_thresholds_from_false_reject_and_escape_rates() -> None:
    good = np.linspace(0.0, 1.0, 101)
    config = AnomalyConfig(false_reject_rate=0.05, escape_rate=0.1)
    c = calibration(good, [], config)
    assert c["holdout_false_reject_rate"] <= 0.05 and "false-reject" in c["threshold_source"]
    assert c["raw_center"] == pytest.approx(0.5)
    defects = np.arange(10.0)
    assert threshold_for_escape_rate(defects, 0.1) == 1.0  # one of ten may escape: the lowest
    assert threshold_for_escape_rate(defects, 0.0) == 0.0
    c = calibration(good, defects, config)
    assert c["raw_threshold"] == 1.0 and c["calibration_escape_rate"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"1\.5"):
        threshold_for_escape_rate(defects, 1.5)


def test_an_escape_rate_threshold_that_rejects_most_good_parts_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    good = np.linspace(0.0, 1.0, 101)
    config = AnomalyConfig(escape_rate=0.1)
    with caplog.at_level("WARNING", logger="inspect_app.engine.anomaly"):
        calibration(good, np.linspace(0.95, 2.0, 10), config)  # the threshold lies above every good part
    assert not caplog.records
    with caplog.at_level("WARNING", logger="inspect_app.engine.anomaly"):
        c = calibration(good, np.linspace(0.2, 0.3, 10), config)
    assert c["holdout_false_reject_rate"] > 0.7
    assert f"calls {100 * c['holdout_false_reject_rate']:.1f} % of the 101 held-out good images NG" in caplog.text


def test_normalisation_puts_every_threshold_at_one_half() -> None:
    for center, threshold in ((1.0, 3.0), (10.0, 11.0)):
        assert normalize(threshold, center, threshold) == pytest.approx(0.5)
        assert normalize(center, center, threshold) == pytest.approx(0.1)
        assert denormalize(float(normalize(13.7, center, threshold)), center, threshold) == pytest.approx(13.7)


def test_normalised_scores_never_tie_at_the_ends() -> None:
    """Raw scores far below the centre or far above the threshold keep their order (no clip)."""
    raw = np.array([-1e6, -1e3, 0.0, 5.0, 11.0, 50.0, 1e3, 1e6, 1e9])
    scores = np.asarray(normalize(raw, 10.0, 11.0))
    assert np.all(np.diff(scores) > 0), scores
    assert np.all((scores > 0.0) & (scores < 1.0))


def test_config_rejects_bad_values_by_name() -> None:
    with pytest.raises(ConfigError, match="coreset_ratio 0"):
        AnomalyConfig(coreset_ratio=0)
    with pytest.raises(ConfigError, match=r"'fit'.*square, keep_aspect"):
        AnomalyConfig(resize="fit")
    with pytest.raises(ConfigError, match="unknown anomaly option"):
        AnomalyConfig.from_dict({"ratio": 0.1})


def test_scan_good_only_needs_a_good_folder(tmp_path: Path) -> None:
    (tmp_path / "scratch").mkdir()
    write_image(tmp_path / "scratch" / "a.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"cannot tell which class holds the good parts among \['scratch'\]"):
        scan_good_only(tmp_path)
    # A good folder named otherwise is found by its name, or named by the user.
    for i in range(2):
        write_image(tmp_path / "OK" / f"{i}.png", np.zeros((8, 8, 3), np.uint8))
    data = scan_good_only(tmp_path)
    assert len(data.good) == 2 and [label for _, label in data.defects] == ["scratch"]
    assert len(scan_good_only(tmp_path, "OK").good) == 2


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AnomalyConfig, Path]:
    root = tmp_path_factory.mktemp("anomaly")
    good_dir = root / "good"
    for i, sample in enumerate(_samples("good", 24, 0)):
        write_image(good_dir / f"g{i:02d}.png", sample.image)
    # Stages 2-3 only: on 96 px parts the stride-32 stage would span a third of the part and blur the map.
    config = AnomalyConfig(input_size=SIZE, device="cpu", coreset_ratio=0.25, holdout_fraction=0.25,
                           false_reject_rate=0.0, layers=(2, 3))
    result = fit_anomaly(GoodOnlyData(tuple(sorted(good_dir.iterdir()))), root / "model", config, name="pc1")
    return result.model_dir, config, root


@pytest.mark.slow
def test_every_good_image_is_in_the_bank_and_held_out_ones_are_scored_leave_one_out(fitted: tuple) -> None:
    model_dir, config, _ = fitted
    model, card = load_checkpoint(model_dir)
    bank_list = (model_dir / "split_bank.txt").read_text().split()
    held_out = (model_dir / "split_holdout.txt").read_text().split()
    # Fewer good images than min_calibration_images: every one of them is scored leave-one-out.
    assert len(bank_list) == card.anomaly["train_images"] == 24 and len(held_out) == 24
    assert len(json.loads((model_dir / "calibration_scores.json").read_text())["raw_scores"]) == 24
    assert set(held_out) <= set(bank_list)
    # In the bank, a held-out image finds its own patches and scores near zero; the calibration did not let it.
    from inspect_app.data.image_io import read_image

    in_bank = [r.score for r in score_raw(model, [read_image(Path(p)) for p in held_out], config)]
    assert max(in_bank) < card.anomaly["raw_center"]
    assert card.anomaly["raw_map_threshold"] >= card.anomaly["raw_threshold"]
    assert card.anomaly["raw_map_center"] >= card.anomaly["raw_center"]


@pytest.mark.slow
def test_defects_score_higher_than_their_clean_part_and_the_map_finds_them(fitted: tuple) -> None:
    model_dir, config, _ = fitted
    model, card = load_checkpoint(model_dir)
    assert card.kind == "patchcore" and card.anomaly["bank_rows"] > 0
    defects = [s for label in ("scratch", "crack", "pit", "stain") for s in _samples(label, 3, 1000)]
    dirty = score_raw(model, [s.image for s in defects], config)
    clean = score_raw(model, [s.clean for s in defects], config)
    higher = sum(d.score > c.score for d, c in zip(dirty, clean, strict=True))
    assert higher >= 10  # of 12; chance would give about 6
    peaks_near, ranked = 0, 0
    for sample, raw in zip(defects, dirty, strict=True):
        mask = sample.mask > 0
        y, x = np.unravel_index(int(raw.heatmap.argmax()), raw.heatmap.shape)
        # The map peaks within about one feature cell (stride 8) of the drawn defect, and ranks its pixels first.
        peaks_near += bool(cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)[y, x] <= 10)
        ranked += bool(roc_auc(mask.ravel(), raw.heatmap.ravel()) >= 0.85)
    assert ranked >= 10 and peaks_near >= 8


@pytest.mark.slow
def test_inspector_loads_the_anomaly_kind_like_a_classifier(fitted: tuple) -> None:
    model_dir, _, _ = fitted
    inspector = Inspector(model_dir, device="cpu", review_band=0.1)
    assert inspector.threshold == 0.5 and inspector.card.kind == "patchcore"
    goods = [s.image for s in _samples("good", 4, 500)]
    defects = [s.image for s in _samples("crack", 4, 2000)]
    predictions = inspector.predict(goods + defects)
    assert len(predictions) == 8
    for p in predictions:
        assert 0.0 <= p.score <= 1.0
        assert p.class_scores["anomaly"] == pytest.approx(p.score)
        if p.decision is Decision.OK:
            assert p.heatmap is None and p.defect_class is None
        else:
            assert p.defect_class == "anomaly" and p.heatmap is not None and p.heatmap.shape == (SIZE, SIZE)
    assert np.mean([p.score for p in predictions[4:]]) > np.mean([p.score for p in predictions[:4]])
    assert inspector.predict(goods[:1])[0].score == pytest.approx(predictions[0].score, abs=1e-5)


@pytest.mark.slow
def test_graph_search_scores_like_exact_search_and_is_built_when_the_inspector_loads(
    fitted: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("faiss")
    model_dir, config, _ = fitted
    model, _ = load_checkpoint(model_dir)
    images = [s.image for label in ("good", "crack") for s in _samples(label, 3, 3000)]
    exact = score_raw(model, images, config.with_overrides(nn_search="exact"))
    graph = score_raw(model, images, config.with_overrides(nn_search="hnsw"))
    assert model._index is not None
    for e, g in zip(exact, graph, strict=True):
        assert g.score == pytest.approx(e.score, rel=0.02)
    # This small bank is under the auto threshold; lowered, the inspector builds the graph before the first frame.
    monkeypatch.setattr(nn_search, "MIN_HNSW_ROWS", 1)
    inspector = Inspector(model_dir, device="cpu")
    assert inspector.model._index is not None


@pytest.mark.slow
def test_update_adds_new_good_images_without_rebuilding(fitted: tuple, tmp_path: Path) -> None:
    model_dir, config, _ = fitted
    old_model, old_card = load_checkpoint(model_dir)
    newcomers = [synthesize("good", np.random.default_rng(s), SIZE) for s in range(900, 960)]
    new_surface = [s for s in newcomers if s.surface != SURFACE][:4]
    paths = []
    for i, sample in enumerate(new_surface):
        paths.append(write_image(tmp_path / f"n{i}.png", sample.image))
    before = [r.score for r in score_raw(old_model, [s.image for s in new_surface], config)]
    result = update_anomaly(model_dir, paths, tmp_path / "updated")
    model, card = load_checkpoint(result.model_dir)
    rows = old_card.anomaly["bank_rows"]
    assert card.anomaly["bank_rows"] > rows
    assert torch.equal(model.memory_bank[:rows], old_model.memory_bank)
    after = [r.score for r in score_raw(model, [s.image for s in new_surface], config)]
    assert all(a < b for a, b in zip(after, before, strict=True))
    assert card.anomaly["train_images"] == old_card.anomaly["train_images"] + len(paths)


@pytest.mark.slow
def test_evaluate_command_takes_defect_class_folders_for_a_good_only_model(fitted: tuple, tmp_path: Path) -> None:
    from inspect_app.engine.evaluate import evaluate_model

    model_dir, _, _ = fitted
    data = tmp_path / "labelled"
    for label, start in (("good", 5000), ("pit", 6000), ("scratch", 7000)):
        for i, sample in enumerate(_samples(label, 4, start)):
            write_image(data / label / f"{label}{i}.png", sample.image)
    report = evaluate_model(model_dir, data, tmp_path / "out", device="cpu")
    # Every defect class is an anomaly to a good-only model; the classes themselves get their own AUROC.
    assert report["classes"] == ["good", "anomaly"] and report["per_class"]["anomaly"]["support"] == 8
    assert set(report["auroc_per_defect_class"]) == {"pit", "scratch"}
    low, high = report["auroc_interval"]
    assert low <= report["auroc_good_vs_defect"] <= high
    with open(tmp_path / "out" / "predictions.csv") as fh:
        assert {line.split(",")[1] for line in fh.read().splitlines()[1:]} == {"good", "pit", "scratch"}


@pytest.mark.slow
def test_evaluation_reports_aurocs_escape_rate_and_worst_overlays(fitted: tuple, tmp_path: Path) -> None:
    model_dir, config, _ = fitted
    model, _ = load_checkpoint(model_dir)
    items = []
    for i, sample in enumerate(_samples("good", 4, 3000) + _samples("pit", 4, 4000)):
        path = write_image(tmp_path / f"{sample.label}{i}.png", sample.image)
        mask = write_image(tmp_path / f"{sample.label}{i}_mask.png", sample.mask) if sample.label != "good" else None
        items.append(EvalImage(path, sample.label, mask))
    report = evaluate_anomaly(model, config, items, overlay_dir=tmp_path / "worst", worst=2)
    assert report["images"] == 8 and report["good"] == 4 and report["defective"] == 4
    assert report["image_auroc"] >= 0.75
    low, high = report["image_auroc_interval"]
    assert low <= report["image_auroc"] <= high
    pairs = sum(e["misordered"] for e in report["costliest"]["defect"])
    assert pairs == pytest.approx((1.0 - report["image_auroc"]) * 4 * 4)  # at most 4 defects: all of them listed
    assert report["pixel_auroc"] >= 0.85
    assert 0.0 <= report["operating_point"]["escape_rate"] <= 1.0
    assert set(report["image_auroc_per_class"]) == {"pit"}
    assert len(report["overlays"]) == 4 and all(Path(p).is_file() for p in report["overlays"])


@pytest.mark.slow
def test_flat_field_scores_good_parts_under_uneven_light_lower(fitted: tuple, tmp_path: Path) -> None:
    plain_dir, config, root = fitted
    assert config.flat_field == 0.0
    flat_dir = fit_anomaly(GoodOnlyData(tuple(sorted((root / "good").iterdir()))), tmp_path / "flat",
                           config.with_overrides(flat_field=0.15), name="flat").model_dir
    # Clean parts lit from one side: the far edge gets a third of the light, a shading the bank never saw.
    light = np.linspace(1.0, 0.35, SIZE)[None, :, None]
    shaded = [np.clip(s.image * light, 0, 255).astype(np.uint8) for s in _samples("good", 6, 2000)]
    normalised = {}
    for name, directory in (("flat", flat_dir), ("plain", plain_dir)):
        model, card = load_checkpoint(directory)
        run_config = AnomalyConfig.from_card(card.train_config, device="cpu")
        raw = np.array([r.score for r in score_raw(model, shaded, run_config)])
        normalised[name] = normalize(raw, card.anomaly["raw_center"], card.anomaly["raw_threshold"])
    assert AnomalyConfig.from_card(load_checkpoint(flat_dir)[1].train_config).flat_field == 0.15
    assert float(np.mean(normalised["flat"])) < float(np.mean(normalised["plain"]))
    assert int((normalised["flat"] >= 0.5).sum()) <= int((normalised["plain"] >= 0.5).sum())


@pytest.mark.slow
def test_fit_levels_good_distances_across_tile_positions_and_update_rescales(fitted: tuple, tmp_path: Path) -> None:
    _, _, root = fitted
    good = tuple(sorted((root / "good").iterdir()))
    fresh = _samples("good", 6, 500)
    # Tiled at twice the scale, the 12 held-out images give 108 tiles: enough for a per-position scale.
    base = AnomalyConfig(input_size=SIZE, device="cpu", coreset_ratio=0.25, holdout_fraction=0.5, layers=(2, 3),
                         tile_scale=2.0)
    plain_dir = fit_anomaly(GoodOnlyData(good), tmp_path / "plain", base.with_overrides(position_norm=False)).model_dir
    norm_dir = fit_anomaly(GoodOnlyData(good), tmp_path / "norm", base).model_dir
    plain, _ = load_checkpoint(plain_dir)
    model, card = load_checkpoint(norm_dir)
    assert plain.patch_scale.numel() == 0 and load_checkpoint(plain_dir)[1].anomaly["patch_scale_range"] is None
    assert model.patch_scale.shape == (SIZE // 8, SIZE // 8)
    low, high = card.anomaly["patch_scale_range"]
    assert low < 1.0 < high
    assert torch.equal(plain.memory_bank, model.memory_bank)

    def spread(m: torch.Tensor) -> float:
        """How much good parts' mean distance varies across tile positions (coefficient of variation)."""
        level = patch_grids(m, [s.image for s in fresh], base).grids.mean(0)
        return float(level.std() / level.mean())

    assert spread(model) < 0.7 * spread(plain)
    # An update with new held-out images sets the scale again from them; one without keeps it.
    kept = update_anomaly(norm_dir, good[:2], out_dir=tmp_path / "kept").model_dir
    assert torch.equal(load_checkpoint(kept)[0].patch_scale, model.patch_scale)
    fresh_dir = tmp_path / "fresh"
    for i, sample in enumerate(fresh):
        write_image(fresh_dir / f"f{i}.png", sample.image)
    redone = update_anomaly(norm_dir, good[:2], out_dir=tmp_path / "redone",
                            recalibrate_with=sorted(fresh_dir.iterdir())).model_dir
    new_scale = load_checkpoint(redone)[0].patch_scale
    assert new_scale.shape == model.patch_scale.shape and not torch.equal(new_scale, model.patch_scale)


@pytest.mark.slow
def test_good_only_models_get_a_review_band_by_default_sized_from_calibration(fitted: tuple) -> None:
    model_dir, _, _ = fitted
    inspector = Inspector(model_dir, device="cpu")
    card = inspector.card
    assert card.review_band > 0 and inspector.review_band == card.review_band
    # The band's lower edge is the raw score that about review_rate of the held-out good images reach.
    edge = card.anomaly["raw_review_edge"]
    assert card.anomaly["raw_center"] < edge < card.anomaly["raw_threshold"]
    assert normalize(edge, card.anomaly["raw_center"], card.anomaly["raw_threshold"]) == pytest.approx(
        0.5 - card.review_band)
    assert card.anomaly["score_units"].startswith("score = 0.5 + 0.5 x")
    low, high = card.anomaly["false_reject_interval"]
    assert 0.0 <= low <= high <= 1.0
    images = [s.image for label in ("good", "crack") for s in _samples(label, 6, 4000)]
    predictions = inspector.predict(images)
    assert all(p.raw_score is not None for p in predictions)
    for p in predictions:  # the decision follows the normalised score: NG at 0.5, REVIEW in the band below
        expected = "NG" if p.score >= 0.5 else "REVIEW" if p.score >= 0.5 - card.review_band else "OK"
        assert p.decision.value == expected
    assert Inspector(model_dir, device="cpu", review_band=0.0).review_band == 0.0


@pytest.mark.slow
def test_the_reload_check_fails_the_training_when_the_saved_model_scores_otherwise(fitted: tuple) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    from inspect_app.data.image_io import read_image
    from inspect_app.engine.anomaly_reload import check_reload
    from inspect_app.errors import ReloadCheckError

    model_dir, _, root = fitted
    model, card = load_checkpoint(model_dir)
    exact = AnomalyConfig.from_card(card.train_config, device="cpu", nn_search="exact")
    paths = [Path(p) for p in json.loads((model_dir / "calibration_scores.json").read_text())["held_out"][:2]]
    expected = [(p, score_raw(model, [read_image(p)], exact)[0].score) for p in paths]
    check_reload(model_dir, card.anomaly, expected)  # the intact model scores as it did in memory
    broken = root / "broken"
    shutil.copytree(model_dir, broken)
    state = load_file(str(broken / "model.safetensors"))
    state["memory_bank"] = state["memory_bank"] * 1.5  # a bank that no longer describes the calibrated one
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(ReloadCheckError, match=r"scores .* \(exact search\), the calibrated model"):
        check_reload(broken, card.anomaly, expected)


def test_geometry_tiles_long_parts_and_keeps_near_square_ones_square() -> None:
    from inspect_app.engine.anomaly_config import choose_geometry

    tall, info = choose_geometry([(500, 1250)] * 5, AnomalyConfig())
    assert tall.resize == "keep_aspect" and info["median_aspect"] == 2.5 and "tiled" in info["reason"]
    square, info = choose_geometry([(300, 360), (420, 400)], AnomalyConfig())
    assert square.resize == "square" and info["resize"] == "square"
    kept, info = choose_geometry([(500, 1250)], AnomalyConfig(resize="square"))
    assert kept.resize == "square" and info["reason"] == "set in the recipe"
    assert "tile_scale 2" in choose_geometry([(900, 900)], AnomalyConfig())[1]["hint"]


def test_a_severity_model_is_refused_by_the_inspector(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "severity"
    shutil.copytree(tiny_checkpoint, folder)
    card = json.loads((folder / "model_card.json").read_text())
    card.update(kind="severity", classes=["severity"])
    (folder / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match=r"severity model.*no OK/NG decision rule"):
        Inspector(folder, device="cpu")


@pytest.mark.slow
def test_evaluate_reports_the_models_own_operating_point_and_pixel_auroc(fitted: tuple, tmp_path: Path) -> None:
    """Through ``inspect-app evaluate`` on an MVTec folder (masks): the figures a plant feels, from the saved model."""
    import csv

    from inspect_app.cli import main

    model_dir, _, _ = fitted
    root = tmp_path / "mvtec"
    for i, sample in enumerate(_samples("good", 6, 5000)):
        write_image(root / "train" / "good" / f"{i:03d}.png", sample.image)
        write_image(root / "test" / "good" / f"{i:03d}.png", sample.image)
    for i, sample in enumerate(_samples("crack", 6, 6000)):
        write_image(root / "test" / "crack" / f"{i:03d}.png", sample.image)
        write_image(root / "ground_truth" / "crack" / f"{i:03d}_mask.png", np.repeat(sample.mask[..., None], 3, 2))
    out = tmp_path / "eval"
    assert main(["--home", str(tmp_path / "home"), "evaluate", str(model_dir), str(root), "--out", str(out),
                 "--device", "cpu"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    point = report["at_model_threshold"]
    with (out / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    decisions = [(r["label"], r["decision"]) for r in rows]
    good_ng = sum(1 for label, d in decisions if label == "good" and d == "NG") / 6
    crack_ok = sum(1 for label, d in decisions if label == "crack" and d == "OK") / 6
    assert point["false_reject_rate"] == pytest.approx(good_ng) and point["escape_into_ok_rate"] == pytest.approx(
        crack_ok)
    assert point["review_share"] == pytest.approx(sum(d == "REVIEW" for _, d in decisions) / 12)
    assert report["model_review_band"] > 0 and 0.5 < report["pixel_auroc"] <= 1.0
    assert all(r["raw_score"] for r in rows) and len({r["score"] for r in rows}) == len(rows)  # no ties
