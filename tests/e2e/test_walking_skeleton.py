"""The whole product on the embedded default: sample data → train → inspect → database → dashboard."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from inspect_app.cli import main
from inspect_app.data.synthetic import generate_sample_data
from inspect_app.records import Decision

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    generate_sample_data(data, seed=3, per_class={"good": 12, "scratch": 6, "pit": 6}, incoming=10, size=96)
    # A corrupt file and a truncated JPEG among the incoming images must become error rows, not crashes.
    (data / "incoming" / "corrupt.jpg").write_bytes(b"this is not an image")
    good_jpeg = sorted((data / "incoming").glob("0*.jpg"))[0].read_bytes()
    (data / "incoming" / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    home = root / "home"
    db_url = f"sqlite:///{home / 'plant.db'}"
    common = ["--home", str(home), "--db", db_url]
    assert main([*common, "train", str(data / "train"), "--out", str(home / "models" / "tiny"),
                 "--epochs", "1", "--input-size", "96", "--batch-size", "8"]) == 0
    csv_path = root / "out.csv"
    assert main([*common, "inspect", str(data / "incoming"), "--model", str(home / "models" / "tiny"),
                 "--csv", str(csv_path), "--batch-size", "4"]) == 0
    return {"root": root, "data": data, "home": home, "db_url": db_url, "csv": csv_path, "common": common}


def test_model_folder_has_safetensors_and_card(flow: dict) -> None:
    model = flow["home"] / "models" / "tiny"
    assert (model / "model.safetensors").is_file()
    assert (model / "model_card.json").is_file()
    assert (model / "config.yaml").is_file()
    assert (model / "split_val.csv").read_text().count("\n") >= 4


def test_every_image_has_one_row(flow: dict) -> None:
    from inspect_app.storage.db import Database
    from inspect_app.storage.repository import Repository

    repo = Repository(Database.open(flow["db_url"]))
    rows = repo.list_inspections(limit=1000)
    assert len(rows) == 12  # 10 incoming + corrupt + truncated
    errors = {Path(r.image_path).name: r.error for r in rows if r.decision is Decision.ERROR}
    assert set(errors) == {"corrupt.jpg", "truncated.jpg"}
    assert "truncated" in errors["truncated.jpg"]
    decided = [r for r in rows if r.decision is not Decision.ERROR]
    assert all(r.model_version == "tiny" and r.score is not None and r.content_hash for r in decided)
    assert [v.name for v in repo.list_model_versions()] == ["tiny"]
    assert repo.active_model().name == "tiny"
    with open(flow["csv"], newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 12


def test_rerun_is_idempotent(flow: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from inspect_app.storage.db import Database
    from inspect_app.storage.repository import Repository

    assert main([*flow["common"], "inspect", str(flow["data"] / "incoming"), "--model",
                 str(flow["home"] / "models" / "tiny")]) == 0
    out = capsys.readouterr().out
    assert "skipped 12 image(s)" in out
    assert "All of station-1" in out
    assert len(Repository(Database.open(flow["db_url"])).list_inspections(limit=1000)) == 12


def test_dashboard_overview_shows_the_counts(flow: dict, monkeypatch: pytest.MonkeyPatch, repo_root: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from inspect_app.app import users
    from inspect_app.storage import Repository, queries
    from inspect_app.storage.db import Database

    db = Database.open(flow["db_url"])
    expected = queries.summary(db)
    if Repository(db).get_user("qe") is None:
        users.create_user(db, "qe", "viewer", "qe-long-password")
    monkeypatch.setenv("INSPECT_DATABASE_URL", flow["db_url"])
    monkeypatch.setenv("INSPECT_HOME", str(flow["home"]))
    app = AppTest.from_file(str(repo_root / "inspect_app" / "ui" / "app.py"), default_timeout=60).run()
    assert not app.metric  # closed by default: nothing before sign-in
    app.sidebar.text_input(key="sign_in_user").input("qe")
    app.sidebar.text_input(key="sign_in_password").input("qe-long-password")
    next(b for b in app.sidebar.button if b.label == "Sign in").click()
    app.run()
    assert not app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Inspected"] == str(expected.total)
    assert metrics["NG"] == str(expected.ng)
    assert expected.total == 12


def test_declared_pipeline_runs(flow: dict, tmp_path: Path) -> None:
    from inspect_app.storage.db import Database
    from inspect_app.storage.repository import Repository

    db_url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"name: job\nstation: {{name: station-9, line: line-2}}\n"
        f"source: {{kind: folder, path: {flow['data'] / 'incoming'}}}\n"
        f"model: {{path: {flow['home'] / 'models' / 'tiny'}, threshold: 0.5}}\n"
        f"inference: {{batch_size: 5, device: cpu}}\n"
        f"sinks: {{database: '{db_url}', csv: {tmp_path / 'job.csv'}, ng_dir: {tmp_path / 'ng'}}}\n"
    )
    assert main(["--home", str(flow["home"]), "run", str(spec)]) == 0
    rows = Repository(Database.open(db_url)).list_inspections(limit=100)
    assert len(rows) == 12
    assert {(r.station, r.line) for r in rows} == {("station-9", "line-2")}
    ng_rows = [r for r in rows if r.decision is Decision.NG]
    assert all(r.heatmap_path and Path(r.heatmap_path).is_file() for r in ng_rows)
