"""Click-through on the Overview (``ui.overview_drill``): a defect-rate point or a Pareto bar picked lists the NG
parts behind it; the charts carry the selections that fill the pickers."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
from streamlit.testing.v1 import AppTest

from inspect_app.records import Decision
from inspect_app.ui import common, overview_drill
from tests.ui import test_ui_pages as pages

plant = pages.plant
_open, _run = pages._open, pages._run


def _drill_table(at: AppTest) -> pd.DataFrame:
    """The parts table under "Parts behind a chart point" (the latest-NG table is the last one)."""
    tables = [d.value for d in at.dataframe if common.time_title() in d.value.columns]
    assert len(tables) == 2, "no parts table behind the pick"
    return tables[0]


def test_picking_a_defect_rate_point_lists_the_ng_parts_of_that_bucket(plant: dict) -> None:
    at = _open()
    picker = at.selectbox(key=overview_drill.DRILL_BUCKET_KEY)
    assert picker.value == overview_drill.NOTHING_PICKED
    ng = [r for r in plant["rows"] if r.decision is Decision.NG]
    newest = max(ng, key=lambda r: r.created_at)
    hour = newest.created_at.replace(minute=0, second=0, microsecond=0)
    label = common.format_time(hour)
    assert label in picker.options
    picker.select(label)
    at = _run(at)
    expected = sorted((r for r in ng if hour <= r.created_at < hour + timedelta(hours=1)),
                      key=lambda r: r.created_at, reverse=True)
    table = _drill_table(at)
    assert list(table["Image"]) == [r.image_path for r in expected]
    assert any(f"{len(expected)} NG part(s) behind {label}" in c.value for c in at.caption)


def test_picking_a_pareto_class_and_a_station_lists_only_those_parts(plant: dict) -> None:
    at = _open()
    at.selectbox(key=overview_drill.DRILL_CLASS_KEY).select("scratch")
    at = _run(at)
    scratch = [r for r in plant["rows"] if r.decision is Decision.NG and r.defect_class == "scratch"]
    assert set(_drill_table(at)["Image"]) == {r.image_path for r in scratch} and len(scratch) == 2
    at.sidebar.selectbox(key="station").select("cell-b")
    at = _run(at)
    assert list(_drill_table(at)["Image"]) == [r.image_path for r in scratch if r.station == "cell-b"]
    at.selectbox(key=overview_drill.DRILL_CLASS_KEY).select(overview_drill.NOTHING_PICKED)
    at = _run(at)
    assert len([d for d in at.dataframe if common.time_title() in d.value.columns]) == 1


def test_charts_carry_the_click_selections(plant: dict) -> None:
    at = _open()
    specs = [json.loads(e.proto.spec) for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]
    def names(node: object) -> set[str]:
        # Altair hoists layer parameters to the top with the views they belong to; look everywhere.
        if isinstance(node, dict):
            found = {p["name"] for p in node.get("params", []) if isinstance(p, dict) and "name" in p}
            return found.union(*(names(v) for v in node.values()))
        return set().union(*(names(v) for v in node)) if isinstance(node, list) else set()

    params = set().union(*(names(spec) for spec in specs))
    assert {overview_drill.BUCKET_PICK, overview_drill.CLASS_PICK} <= params


def test_picked_reads_a_point_selection() -> None:
    state = {"selection": {overview_drill.CLASS_PICK: [{"Defect class": "dent"}]}}
    assert overview_drill.picked(state, overview_drill.CLASS_PICK, "Defect class") == "dent"
    empty = {"selection": {overview_drill.CLASS_PICK: []}}
    assert overview_drill.picked(empty, overview_drill.CLASS_PICK, "Defect class") is None
    assert overview_drill.picked(None, overview_drill.CLASS_PICK, "Defect class") is None
    assert overview_drill.picked({"selection": {}}, overview_drill.BUCKET_PICK, common.time_title()) is None
