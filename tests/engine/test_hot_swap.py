"""Hot model swap on the folder pipeline: a promotion mid-run switches models between batches, losing nothing."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from inspect_app.config.recipes import TrainConfig
from inspect_app.engine.hot_swap import HotSwapInspector, inspector_loader
from inspect_app.engine.pipeline import inspect_folder
from inspect_app.engine.sinks import DatabaseSink
from inspect_app.engine.train import fit
from inspect_app.records import ModelVersion
from inspect_app.storage import Database, Repository

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_models(tiny_sets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real checkpoints trained on the tiny set (1 epoch each: only their names matter here)."""
    root = tmp_path_factory.mktemp("models")
    config = TrainConfig(epochs=1, input_size=64, batch_size=8, device="cpu")
    return [fit(tiny_sets["train"], root / name, config, name=name).model_dir for name in ("m-old", "m-new")]


@pytest.fixture(scope="module")
def two_good_only_models(tiny_sets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real good-only checkpoints fitted on the tiny set's good images (different coresets)."""
    from inspect_app.data.folders import list_images
    from inspect_app.engine.anomaly import GoodOnlyData, fit_anomaly
    from inspect_app.engine.anomaly_config import AnomalyConfig

    root = tmp_path_factory.mktemp("good-only")
    good = GoodOnlyData(tuple(list_images(tiny_sets["train"] / "good")))
    return [fit_anomaly(good, root / name, AnomalyConfig(input_size=64, device="cpu", coreset_ratio=ratio),
                        name=name).model_dir for name, ratio in (("pc-old", 0.5), ("pc-new", 0.25))]


def _register(repo: Repository, model_dir: Path, kind: str = "classifier") -> None:
    classes = ("good", "anomaly") if kind == "patchcore" else ("good", "scratch")
    repo.add_model_version(ModelVersion(name=model_dir.name, kind=kind, backbone="efficientnet_lite0",
                                        path=str(model_dir), classes=classes))


def test_promotion_mid_run_swaps_between_batches_without_losing_frames(
    sqlite_db: Database, tiny_sets: dict[str, Path], two_models: list[Path]
) -> None:
    repo = Repository(sqlite_db)
    for model_dir in two_models:
        _register(repo, model_dir)
    repo.promote("m-old")
    hot = HotSwapInspector(repo, inspector_loader(device="cpu"), poll_s=0.0, background=False)

    class PromotedAfterFirstBatch:
        """The hot inspector, with the active version changed right after its first batch is decided.

        Promoting from the progress callback raced with inference: the sinks run on their own thread and lag up to
        two batches behind, so on a fast machine every batch could be decided before the promotion landed.
        """

        def __init__(self) -> None:
            self.batches = 0

        def predict(self, images: list) -> list:
            out = hot.predict(images)
            self.batches += 1
            if self.batches == 1:
                repo.promote("m-new")  # an engineer (or the worker) promotes while the pipeline runs
            return out

        def __getattr__(self, name: str) -> object:
            return getattr(hot, name)

    result = inspect_folder(tiny_sets["incoming"], PromotedAfterFirstBatch(), [DatabaseSink(repo)], station="s1",
                            line="l1", batch_size=4)
    rows = repo.list_inspections(limit=100)
    assert result.total == len(rows) == 12  # every frame decided and recorded once
    by_model = {name: sum(r.model_version == name for r in rows) for name in ("m-old", "m-new")}
    # The pipeline polls before every batch: the first batch ran on the old model, the later ones on the new one.
    assert by_model == {"m-old": 4, "m-new": 8}
    old_paths = {r.image_path for r in rows if r.model_version == "m-old"}
    assert all(r.image_path > max(old_paths) for r in rows if r.model_version == "m-new")
    assert hot.swaps == 1 and hot.card.name == "m-new"


def test_an_onnx_pipeline_stays_on_onnxruntime_after_a_promotion(
    sqlite_db: Database, tmp_path: Path, two_models: list[Path]
) -> None:
    from inspect_app.engine.onnx_backend import OnnxInspector

    repo = Repository(sqlite_db)
    copies = []
    for model_dir in two_models:  # copies: the export writes model.onnx into the version's folder
        copy = tmp_path / model_dir.name
        shutil.copytree(model_dir, copy)
        copies.append(copy)
        _register(repo, copy)
    repo.promote("m-old")
    hot = HotSwapInspector(repo, inspector_loader(backend="onnx"), poll_s=0.0, background=False)
    assert isinstance(hot.current, OnnxInspector) and hot.card.name == "m-old"
    assert not (copies[1] / "model.onnx").exists()
    repo.promote("m-new")
    assert hot.poll()
    assert isinstance(hot.current, OnnxInspector) and hot.card.name == "m-new"
    assert (copies[1] / "model.onnx").is_file()  # exported for the swap
    assert len(hot.predict([np.zeros((64, 64, 3), np.uint8)])) == 1


def test_a_good_only_onnx_pipeline_stays_on_onnxruntime_after_a_promotion(
    sqlite_db: Database, tmp_path: Path, two_good_only_models: list[Path]
) -> None:
    from inspect_app.engine.onnx_backend import OnnxEmbedder, OnnxInspector

    repo = Repository(sqlite_db)
    for model_dir in two_good_only_models:
        copy = tmp_path / model_dir.name
        shutil.copytree(model_dir, copy)
        _register(repo, copy, kind="patchcore")
    repo.promote("pc-old")
    hot = HotSwapInspector(repo, inspector_loader(backend="onnx"), poll_s=0.0, background=False)
    assert isinstance(hot.current, OnnxInspector) and hot.card.name == "pc-old"
    repo.promote("pc-new")
    assert hot.poll()
    assert isinstance(hot.current, OnnxInspector) and hot.card.name == "pc-new"
    assert isinstance(hot.current.model._embedder, OnnxEmbedder)  # the feature extractor runs in onnxruntime
    assert (tmp_path / "pc-new" / "model.onnx").is_file()  # exported (and checked) for the swap
    (prediction,) = hot.predict([np.full((64, 64, 3), 128, np.uint8)])
    assert prediction.raw_score is not None and prediction.raw_score > 0


def test_background_load_keeps_the_old_model_until_the_new_one_is_ready(
    sqlite_db: Database, two_models: list[Path], tiny_sets: dict[str, Path]
) -> None:
    repo = Repository(sqlite_db)
    for model_dir in two_models:
        _register(repo, model_dir)
    repo.promote("m-old")
    hot = HotSwapInspector(repo, inspector_loader(device="cpu"), poll_s=0.0, background=True)
    repo.promote("m-new")
    hot.poll()
    assert hot.card.name == "m-old"  # still inspecting with the old model while the new one loads
    deadline = time.monotonic() + 60
    while not hot.poll() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hot.card.name == "m-new" and hot.swaps == 1


def test_a_model_that_cannot_load_keeps_the_old_one(sqlite_db: Database, two_models: list[Path]) -> None:
    repo = Repository(sqlite_db)
    _register(repo, two_models[0])
    repo.add_model_version(ModelVersion(name="broken", kind="classifier", backbone="x", path="/nonexistent",
                                        classes=("good", "scratch")))
    repo.promote(two_models[0].name)
    hot = HotSwapInspector(repo, inspector_loader(device="cpu"), poll_s=0.0, background=False)
    repo.promote("broken")
    assert hot.poll() is False
    assert hot.card.name == "m-old"


def test_a_database_that_does_not_answer_keeps_the_current_model_deciding(
    tmp_path: Path, two_models: list[Path], tiny_sets: dict[str, Path]
) -> None:
    from inspect_app.data.folders import list_images
    from inspect_app.data.image_io import read_image

    db_file = tmp_path / "plant" / "inspect.db"
    db = Database.open(f"sqlite:///{db_file}")
    repo = Repository(db)
    _register(repo, two_models[0])
    repo.promote(two_models[0].name)
    hot = HotSwapInspector(repo, inspector_loader(device="cpu"), poll_s=0.0, background=False)
    db.dispose()
    shutil.rmtree(db_file.parent)  # the database is gone: every read fails (an outage)
    assert hot.poll() is False
    image = read_image(list_images(tiny_sets["incoming"])[0])
    assert hot.card.name == "m-old" and len(hot.predict([image])) == 1
    db.dispose()


class _ChangedAfterFirstBatch:
    """An inspector whose model's stored threshold is changed (as on the dashboard) right after its first batch."""

    def __init__(self, inner: object, change: object) -> None:
        self.inner = inner
        self.change = change
        self.batches = 0

    def predict(self, images: list) -> list:
        out = self.inner.predict(images)
        self.batches += 1
        if self.batches == 1:
            self.change()
        return out

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_threshold_set_on_the_dashboard_reaches_a_following_pipeline_between_batches(
    sqlite_db: Database, tiny_sets: dict[str, Path], two_models: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    from inspect_app.app.access import shell_user
    from inspect_app.app.versions import set_model_threshold

    repo = Repository(sqlite_db)
    _register(repo, two_models[0])
    repo.promote("m-old")
    hot = HotSwapInspector(repo, inspector_loader(device="cpu"), poll_s=0.0, background=False)
    start = hot.threshold
    assert hot.threshold_source == "model_versions" and start == repo.get_model_version("m-old").threshold
    new = 0.97 if start < 0.9 else 0.3

    def change() -> None:
        set_model_threshold(sqlite_db, shell_user("tester"), "m-old", new)  # the audited dashboard path

    with caplog.at_level("INFO", logger="inspect_app"):
        inspect_folder(tiny_sets["incoming"], _ChangedAfterFirstBatch(hot, change), [DatabaseSink(repo)],
                       station="s1", line="l1", batch_size=4)
    rows = sorted(repo.list_inspections(limit=100), key=lambda r: r.image_path)
    assert len(rows) == 12 and hot.swaps == 0  # the same model throughout, no restart
    assert [r.threshold for r in rows] == [start] * 4 + [new] * 8  # each row says which threshold decided it
    for row in rows:  # and each was decided by it
        assert (row.decision.value == "NG") == (row.score >= row.threshold), row
    assert f"threshold {start:.4g} → {new:.4g} (model_versions)" in caplog.text


def test_a_pipeline_without_follow_active_starts_with_the_stored_threshold_unless_it_pins_one(
    sqlite_db: Database, tiny_sets: dict[str, Path], two_models: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    from inspect_app.app.access import shell_user
    from inspect_app.app.versions import set_model_threshold
    from inspect_app.config.pipeline import PipelineSpec
    from inspect_app.engine.hot_swap import bind_to_database
    from inspect_app.engine.infer import Inspector

    repo = Repository(sqlite_db)
    _register(repo, two_models[0])
    version = set_model_threshold(sqlite_db, shell_user("tester"), "m-old", 0.81)
    spec = PipelineSpec(name="p", source=str(tiny_sets["incoming"]), model=str(two_models[0]), device="cpu")
    bound = bind_to_database(Inspector(two_models[0], device="cpu"), repo, version, spec)
    assert isinstance(bound, Inspector) and (bound.threshold, bound.threshold_source) == (0.81, "model_versions")
    result = inspect_folder(tiny_sets["incoming"], bound, [DatabaseSink(repo)], station="s1", line="l1")
    assert result.total == 12 and {r.threshold for r in repo.list_inspections(limit=100)} == {0.81}

    pinned = spec.with_overrides(threshold=0.42)
    with caplog.at_level("INFO", logger="inspect_app"):
        bound = bind_to_database(Inspector(two_models[0], device="cpu", threshold=0.42), repo, version, pinned)
    assert (bound.threshold, bound.threshold_source) == (0.42, "given")
    assert "threshold 0.42 from the pipeline's model.threshold" in caplog.text
