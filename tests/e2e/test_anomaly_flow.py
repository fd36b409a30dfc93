"""Good-only flow through the CLI: fit an anomaly model → inspect a folder → database rows and overlays → update."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspect_app.cli import main
from inspect_app.data.synthetic import generate_sample_data
from inspect_app.records import Decision

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("anomaly-e2e")
    data = root / "data"
    generate_sample_data(data, seed=5, per_class={"good": 16, "pit": 4}, incoming=8, size=96)
    home = root / "home"
    db_url = f"sqlite:///{home / 'plant.db'}"
    common = ["--home", str(home), "--db", db_url]
    # Class folders: good/ fills the bank and the held-out set, pit/ sets the threshold by escape rate.
    assert main([*common, "train", str(data / "train"), "--kind", "anomaly", "--out", str(home / "models" / "pc"),
                 "--input-size", "96", "--device", "cpu"]) == 0
    assert main([*common, "inspect", str(data / "incoming"), "--model", str(home / "models" / "pc"),
                 "--review-band", "0.1", "--ng-dir", str(root / "ng")]) == 0
    return {"root": root, "data": data, "home": home, "db_url": db_url, "common": common}


def test_anomaly_model_is_registered_and_every_image_decided(flow: dict) -> None:
    from inspect_app.storage.db import Database
    from inspect_app.storage.repository import Repository

    repo = Repository(Database.open(flow["db_url"]))
    version = repo.get_model_version("pc")
    assert version is not None and version.kind == "patchcore" and version.threshold == 0.5
    assert "escape rate" in (flow["home"] / "models" / "pc" / "model_card.json").read_text()
    rows = repo.list_inspections(limit=100)
    assert len(rows) == 8
    assert all(r.decision in (Decision.OK, Decision.REVIEW, Decision.NG) and 0.0 <= r.score <= 1.0 for r in rows)
    flagged = [r for r in rows if r.decision is not Decision.OK]
    assert all(r.heatmap_path and Path(r.heatmap_path).is_file() for r in flagged)


def test_update_through_the_cli_registers_a_new_version(flow: dict) -> None:
    from inspect_app.storage.db import Database
    from inspect_app.storage.repository import Repository

    out = flow["home"] / "models" / "pc2"
    assert main([*flow["common"], "train", str(flow["data"] / "train" / "good"), "--kind", "anomaly",
                 "--update", str(flow["home"] / "models" / "pc"), "--out", str(out), "--name", "pc2"]) == 0
    repo = Repository(Database.open(flow["db_url"]))
    assert repo.get_model_version("pc2") is not None
    assert (out / "model.safetensors").is_file()


def test_export_and_an_onnx_pipeline_decide_as_pytorch_did(flow: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from inspect_app.storage.db import Database
    from inspect_app.storage.repository import Repository

    model = flow["home"] / "models" / "pc"
    assert main([*flow["common"], "export", str(model)]) == 0
    assert f"to {model / 'model.onnx'}" in capsys.readouterr().out
    db_url = f"sqlite:///{flow['root'] / 'onnx.db'}"
    spec = flow["root"] / "onnx.yaml"
    spec.write_text(f"name: onnx-line\nsource: {{kind: folder, path: {flow['data'] / 'incoming'}}}\n"
                    f"model: {{path: {model}, backend: onnx, review_band: 0.1}}\nsinks: {{database: '{db_url}'}}\n")
    assert main([*flow["common"], "run", str(spec)]) == 0
    by_torch = {r.image_path: r for r in Repository(Database.open(flow["db_url"])).list_inspections(limit=100)}
    by_onnx = Repository(Database.open(db_url)).list_inspections(limit=100)
    assert len(by_onnx) == len(by_torch) == 8
    for row in by_onnx:
        twin = by_torch[row.image_path]
        assert abs(row.score - twin.score) <= 1e-4 and row.decision is twin.decision
