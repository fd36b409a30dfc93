"""Models page (``ui.models`` with ``ui.model_compare``) driven by ``streamlit.testing`` on the seeded plant of
``test_ui_pages``: two versions side by side (ROC with operating points and the tuner's point, per-class recall,
confusion heat tables up to 10 classes) and which versions rollback and promote offer."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from inspect_app.app import versions
from inspect_app.metrics import rates_at
from inspect_app.records import ModelStatus, ModelVersion, RunStatus, TrainingRun
from inspect_app.storage import Database, Repository, detail_queries
from inspect_app.storage.runs import RunQueue
from inspect_app.ui import model_compare
from tests.ui import test_ui_pages as pages

plant = pages.plant
_open, _run = pages._open, pages._run

TEN_CLASSES = ["good", *(f"defect-{k}" for k in range(1, 10))]


def _charts(at: AppTest) -> list[tuple[dict, list[pd.DataFrame]]]:
    """Every Vega-Lite chart on the page: its spec and its datasets as frames (Arrow IPC in the proto)."""
    out = []
    for element in at.main:
        if getattr(element, "type", "") != "vega_lite_chart":
            continue
        frames = [pa.ipc.open_stream(io.BytesIO(d.data.data)).read_pandas() for d in element.proto.datasets]
        out.append((json.loads(element.proto.spec), frames))
    return out


def _roc_points(at: AppTest) -> pd.DataFrame:
    """The operating points drawn on the comparison ROC."""
    for _, frames in _charts(at):
        for frame in frames:
            if "Point" in frame.columns:
                return frame
    raise AssertionError("no ROC with operating points on the page")


def _add_version(url: str, name: str, metrics: dict, status: ModelStatus = ModelStatus.CANDIDATE,
                 threshold: float = 0.5, run_id: int | None = None) -> None:
    with Database.open(url) as db:
        Repository(db).add_model_version(ModelVersion(
            name=name, kind="classifier", backbone="resnet18", path=f"/models/{name}",
            classes=tuple(metrics.get("classes", ("good", "scratch", "dent"))), metrics=metrics, status=status,
            threshold=threshold, training_run_id=run_id, created_at=datetime.now(UTC) - timedelta(minutes=5)))


def _ten_class_metrics() -> dict:
    # Diagonal 8 per class, one part of each class called the next class: recall 8/9 everywhere.
    n = len(TEN_CLASSES)
    matrix = [[8 if i == j else (1 if j == (i + 1) % n else 0) for j in range(n)] for i in range(n)]
    return {"classes": TEN_CLASSES, "confusion_matrix": matrix, "images": 9 * n, "accuracy": 8 / 9,
            "score_samples": {"good": [0.1, 0.2, 0.3], "defect": [0.25, 0.6, 0.9]}}


def test_compare_defaults_to_active_against_rollback_target_and_switches(plant: dict) -> None:
    _add_version(plant["url"], "m2", {**pages._metrics(), "score_samples": {"good": [0.1, 0.7], "defect": [0.8]}},
                 threshold=0.75)
    at = _open("models")
    assert at.selectbox(key="compare_a").value == "m1" and at.selectbox(key="compare_b").value == "m0"
    headline = next(d.value for d in at.dataframe if "Version" in d.value.columns)
    assert list(headline["Version"]) == ["m1", "m0"]
    # Threshold 0.5: 0 of 8 good scores ≥ 0.5, 1 of 6 defects (0.35) below it.
    assert list(headline["False-reject rate"]) == ["0.0 %", "0.0 %"]
    assert list(headline["Escape rate"]) == [f"{100 / 6:.1f} %"] * 2
    at.selectbox(key="compare_b").select("m2")
    at = _run(at)
    headline = next(d.value for d in at.dataframe if "Version" in d.value.columns)
    assert list(headline["Version"]) == ["m1", "m2"]
    assert headline.set_index("Version").loc["m2", "Threshold"] == "0.75"


def test_roc_has_the_diagonal_each_operating_point_and_the_tuner(plant: dict) -> None:
    at = _open("models")
    at.slider(key="threshold_m1").set_value(0.4)
    at = _run(at)
    points = _roc_points(at).set_index("Point")
    good, defect = pages.GOOD_SCORES, pages.DEFECT_SCORES
    at_half, at_tuner = rates_at(good, defect, 0.5), rates_at(good, defect, 0.4)
    assert points.loc["m1 at 0.50", "False-reject rate"] == pytest.approx(at_half["false_reject_rate"])
    assert points.loc["m0 at 0.50", "Defects caught"] == pytest.approx(1 - at_half["escape_rate"])
    tuner = points.loc["tuner: m1 at 0.40"]
    assert bool(tuner["Tuner"]) and tuner["False-reject rate"] == pytest.approx(at_tuner["false_reject_rate"])
    assert tuner["Defects caught"] == pytest.approx(1 - at_tuner["escape_rate"])
    roc_spec = next(spec for spec, frames in _charts(at) if any("Point" in f.columns for f in frames))
    diagonal = [f for _, frames in _charts(at) for f in frames if "Line" in f.columns]
    assert diagonal and list(diagonal[0]["False-reject rate"]) == [0.0, 1.0] == list(diagonal[0]["Defects caught"])
    assert len(roc_spec["layer"]) == 4  # diagonal, curves, own points, tuner


def test_ten_class_confusion_matrix_fits_and_recall_table_lists_every_class(plant: dict) -> None:
    _add_version(plant["url"], "wide", _ten_class_metrics())
    at = _open("models")
    at.selectbox(key="compare_b").select("wide")
    at = _run(at)
    recalls = next(d.value for d in at.dataframe if "Class" in d.value.columns)
    assert list(recalls["Class"])[:3] == ["good", "scratch", "dent"] and set(TEN_CLASSES) <= set(recalls["Class"])
    wide = recalls.set_index("Class")
    assert wide.loc["defect-9", "Recall wide"] == f"{800 / 9:.1f} %" and wide.loc["defect-9", "Recall m1"] == ""
    matrices = [(spec, frame) for spec, frames in _charts(at) for frame in frames if "Predicted" in frame.columns]
    spec, cells = next((s, f) for s, f in matrices if len(f) == 100)
    assert set(cells["True"]) == set(TEN_CLASSES) and cells["Count"].sum() == 90
    # The heat table keeps within its half of the page instead of being cut off at some class count.
    assert spec["width"] == spec["height"] == model_compare.cell_size(10) * 10 <= model_compare.MATRIX_MAX_PX


def test_cell_size_shrinks_with_classes_but_stays_readable() -> None:
    sizes = [model_compare.cell_size(n) for n in (2, 6, 10, 40)]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == model_compare.CELL_MAX_PX and sizes[-1] == model_compare.CELL_MIN_PX


def test_default_pair_prefers_the_rollback_target_then_the_next_older() -> None:
    names = ["m3", "m2", "m1"]
    assert model_compare.default_pair(names, "m3", "m1") == ("m3", "m1")
    assert model_compare.default_pair(names, "m3", None) == ("m3", "m2")
    assert model_compare.default_pair(names, "m1", "m1") == ("m1", "m3")


def test_rollback_offers_the_previous_active_never_a_failed_candidate(plant: dict) -> None:
    url = plant["url"]
    with Database.open(url) as db:
        run_id = RunQueue(db).add(TrainingRun(config={}, data_dir="/data", status=RunStatus.FAILED))
    _add_version(url, "m2", pages._metrics())
    _add_version(url, "broken", pages._metrics(), run_id=run_id)
    with Database.open(url) as db:
        engineer = Repository(db).get_user("engineer")
        versions.promote_model(db, engineer, "m2")
        assert detail_queries.failed_run_candidates(db) == {"broken"}
    at = _open("models", user="engineer")
    assert at.button(key="rollback").label == "Roll back to m1"
    at.selectbox(key="model_name").select("broken")
    at = _run(at)
    assert at.button(key="promote").disabled
    assert any("failed or cancelled training run" in c.value for c in at.caption)
    at.button(key="rollback").click()
    at = _run(at)
    with Database.open(url) as db:
        assert Repository(db).active_model().name == "m1"
    st.cache_data.clear()
    at = _open("models", user="engineer")
    # The audit trail starts with m2 replacing m1; below m1 it knows nothing, so nothing is offered (no guess at a
    # retired model, no candidate).
    assert at.button(key="rollback").label == "Roll back" and at.button(key="rollback").disabled


def test_versions_table_formats_missing_values_and_times_like_the_other_tables() -> None:
    from inspect_app.records import ModelStatus, ModelVersion
    from inspect_app.ui.models import MISSING, versions_table

    version = ModelVersion(name="m1", kind="classifier", backbone="efficientnet_lite0", path="/models/m1",
                           classes=("good", "dent"), metrics={"accuracy": 0.951234, "images": 12345},
                           status=ModelStatus.ACTIVE, threshold=0.5,
                           created_at=datetime(2026, 12, 1, 21, 9, 1, tzinfo=UTC))
    row = versions_table([version]).iloc[0].to_dict()
    assert row["Accuracy"] == "0.951" and row["Validation images"] == "12,345"
    assert row["Macro recall"] == MISSING and row["AUROC"] == MISSING
    cells = " ".join(str(v) for v in row.values())
    assert "None" not in cells and "+00:00" not in cells
