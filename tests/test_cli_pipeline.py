"""``inspect-app run`` over declared pipelines and ``inspect-app export``, end to end through the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_app.cli import main
from inspect_app.config.pipeline import PipelineSpec
from inspect_app.errors import ConfigError
from inspect_app.storage.db import Database
from inspect_app.storage.repository import Repository


def test_shipped_camera_station_pipeline_parses(repo_root: Path) -> None:
    spec = PipelineSpec.from_yaml(repo_root / "pipelines" / "camera_station.yaml")
    assert (spec.source_kind, spec.source, spec.live) == ("camera", "0", None)
    assert spec.source_options == {"backoff_s": 0.5, "max_backoff_s": 30}
    assert spec.reject_webhook and spec.reject_on == ("NG",) and spec.jsonl and spec.stats_file
    assert spec.batch_size == 4 and spec.max_wait_ms == 10 and spec.queue_size == 8


def test_unknown_keys_in_a_section_are_named(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("source: {kind: folder, path: x, fps: 3}\nmodel: {path: m}\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['fps'\] in 'source'"):
        PipelineSpec.from_yaml(path)
    path.write_text("source: {kind: folder, path: x}\nmodel: {path: m, backend: tvm}\n")
    with pytest.raises(ConfigError, match="'tvm' is not one of torch, onnx"):
        PipelineSpec.from_yaml(path)


def _write_video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (72, 72))
    rng = np.random.default_rng(0)
    for i in range(frames):
        writer.write(np.clip(rng.normal(15 if i % 2 else 230, 8, (72, 72, 3)), 0, 255).astype(np.uint8))
    writer.release()


def test_run_video_pipeline_on_onnx_backend_with_jsonl_and_stats(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = tmp_path / "tiny.onnx"
    assert main(["--home", str(tmp_path), "export", str(tiny_checkpoint), "--format", "onnx", "--out", str(onnx)]) == 0
    assert onnx.stat().st_size > 1_000_000
    video = tmp_path / "clip.avi"
    _write_video(video, 8)
    db_url = f"sqlite:///{tmp_path / 'plant.db'}"
    pipeline = tmp_path / "video.yaml"
    pipeline.write_text(
        f"name: clip\nstation: {{name: st-V, line: L9}}\nsource: {{kind: video, path: {video}}}\n"
        f"model: {{path: {tiny_checkpoint}, backend: onnx, onnx_path: {onnx}}}\n"
        f"inference: {{batch_size: 3, max_wait_ms: 5}}\n"
        f"sinks: {{database: '{db_url}', jsonl: {tmp_path / 'out.jsonl'}, ng_dir: {tmp_path / 'ng'}}}\n"
        f"stats: {{interval_s: 0.5, file: {tmp_path / 'stats.json'}}}\n"
    )
    assert main(["--home", str(tmp_path), "run", str(pipeline)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^images\s+8$", out, re.MULTILINE) and re.search(r"^NG\s+4$", out, re.MULTILINE)
    rows = Repository(Database.open(db_url)).list_inspections(limit=50)
    assert len(rows) == 8 and {r.station for r in rows} == {"st-V"} and {r.line for r in rows} == {"L9"}
    assert sorted(r.decision.value for r in rows) == ["NG"] * 4 + ["OK"] * 4
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 8
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["final"] and stats["frames"] == 8 and stats["name"] == "clip"


@pytest.mark.slow
def test_sigint_drains_flushes_and_exits_0(tiny_checkpoint: Path, tmp_path: Path, repo_root: Path) -> None:
    watched = tmp_path / "drop"
    watched.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        cv2.imwrite(str(watched / f"{i}.png"), np.clip(rng.normal(230, 8, (72, 72, 3)), 0, 255).astype(np.uint8))
    db_url = f"sqlite:///{tmp_path / 'plant.db'}"
    stats = tmp_path / "stats.json"
    pipeline = tmp_path / "watch.yaml"
    pipeline.write_text(
        f"name: drop\nsource: {{kind: watch, path: {watched}, poll_s: 0.1, settle_s: 0}}\n"
        f"model: {{path: {tiny_checkpoint}}}\ninference: {{device: cpu}}\n"
        f"sinks: {{database: '{db_url}', csv: {tmp_path / 'out.csv'}}}\nstats: {{interval_s: 0.2, file: {stats}}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(repo_root), "HF_HUB_OFFLINE": "1"}
    env.pop("INSPECT_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "inspect_app", "--home", str(tmp_path), "run", str(pipeline)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if stats.is_file() and json.loads(stats.read_text()).get("frames") == 6:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert re.search(r"^images\s+6$", out, re.MULTILINE)
    assert len(Repository(Database.open(db_url)).list_inspections(limit=50)) == 6
    assert json.loads(stats.read_text())["final"] is True
    assert "fps" in err  # live figures were printed while it ran


def test_rerunning_a_video_file_writes_no_row_or_line_twice(tiny_checkpoint: Path, tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    _write_video(video, 6)
    db_url = f"sqlite:///{tmp_path / 'plant.db'}"
    pipeline = tmp_path / "video.yaml"
    pipeline.write_text(
        f"name: clip\nstation: {{name: st-R, line: L1}}\nsource: {{kind: video, path: {video}}}\n"
        f"model: {{path: {tiny_checkpoint}}}\ninference: {{batch_size: 3, max_wait_ms: 5}}\n"
        f"sinks: {{database: '{db_url}', jsonl: {tmp_path / 'out.jsonl'}, ng_dir: {tmp_path / 'ng'}}}\n"
    )
    for _ in range(2):
        assert main(["--home", str(tmp_path), "run", str(pipeline)]) == 0
    assert len(Repository(Database.open(db_url)).list_inspections(limit=50)) == 6
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 6


def test_dangling_symlink_error_row_is_written_once_over_reruns(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from inspect_app.data.image_io import write_image

    folder = tmp_path / "parts"
    folder.mkdir()
    write_image(folder / "a.png", np.full((64, 64, 3), 220, np.uint8))
    (folder / "gone.png").symlink_to(tmp_path / "missing.png")
    db_url = f"sqlite:///{tmp_path / 'plant.db'}"
    for _ in range(2):
        assert main(["--home", str(tmp_path), "--db", db_url, "inspect", str(folder), "--model",
                     str(tiny_checkpoint), "--station", "st-S"]) == 0
    rows = Repository(Database.open(db_url)).list_inspections(limit=50)
    assert len(rows) == 2
    assert [r.decision.value for r in rows].count("ERROR") == 1


def test_spool_from_an_earlier_outage_is_written_before_the_skip_list_is_read(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from inspect_app.data.image_io import content_hash, write_image
    from inspect_app.models.checkpoint import read_card
    from inspect_app.records import Decision, Inspection
    from inspect_app.storage.spool import inspection_to_json

    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"p{i}.png", np.full((64, 64, 3), 200 + 10 * i, np.uint8))
    name = read_card(tiny_checkpoint).name
    # Two images were decided during an outage that outlasted the earlier run: they wait in the station's spool.
    spooled = [
        Inspection(station="st-O", line="line-1", source=str(folder), image_path=str(p), decision=Decision.OK,
                   content_hash=content_hash(p.read_bytes()), model_version=name)
        for p in sorted(folder.glob("*.png"))[:2]
    ]
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "st-O.jsonl").write_text("".join(inspection_to_json(r) + "\n" for r in spooled))
    db_url = f"sqlite:///{tmp_path / 'plant.db'}"
    csv_path = tmp_path / "out.csv"
    assert main(["--home", str(tmp_path), "--db", db_url, "inspect", str(folder), "--model", str(tiny_checkpoint),
                 "--station", "st-O", "--csv", str(csv_path)]) == 0
    assert len(Repository(Database.open(db_url)).list_inspections(limit=50)) == 3
    assert len(csv_path.read_text().splitlines()) == 1 + 1  # header + the one image not inspected before
    assert not (tmp_path / "spool" / "st-O.jsonl").exists()


def test_a_pipeline_following_the_active_model_does_not_inspect_its_folder_again_after_a_promotion(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    import dataclasses
    import shutil

    from inspect_app.app.access import shell_user
    from inspect_app.app.versions import promote_model, register_model
    from inspect_app.models.checkpoint import read_card, write_card

    folder = tmp_path / "parts"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):
        cv2.imwrite(str(folder / f"p{i}.png"), np.clip(rng.normal(40 + 40 * i, 8, (64, 64, 3)), 0, 255)
                    .astype(np.uint8))
    db_url = f"sqlite:///{tmp_path / 'plant.db'}"
    pipeline = tmp_path / "line.yaml"
    pipeline.write_text(
        f"name: line\nstation: {{name: st-F, line: L1}}\nsource: {{kind: folder, path: {folder}}}\n"
        f"model: {{path: {tiny_checkpoint}, follow_active: true}}\ninference: {{device: cpu, batch_size: 3}}\n"
        f"sinks: {{database: '{db_url}', jsonl: {tmp_path / 'out.jsonl'}, ng_dir: {tmp_path / 'ng'}}}\n"
    )
    assert main(["--home", str(tmp_path), "run", str(pipeline)]) == 0
    # A second model (the same weights under another name) is promoted while the line is down.
    second = tmp_path / "tiny-pipe-2"
    shutil.copytree(tiny_checkpoint, second)
    write_card(second, dataclasses.replace(read_card(second), name="tiny-pipe-2"))
    db = Database.open(db_url)
    register_model(Repository(db), read_card(second), second)
    promote_model(db, shell_user("tester"), "tiny-pipe-2")
    assert main(["--home", str(tmp_path), "run", str(pipeline)]) == 0
    rows = Repository(db).list_inspections(limit=50)
    assert len(rows) == 6 and {r.model_version for r in rows} == {"tiny-pipe"}, "no part decided twice"
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 6
    # A new part is decided by the promoted model.
    cv2.imwrite(str(folder / "p9.png"), np.full((64, 64, 3), 200, np.uint8))
    assert main(["--home", str(tmp_path), "run", str(pipeline)]) == 0
    newest = Repository(db).list_inspections(limit=50)
    assert len(newest) == 7 and newest[0].model_version == "tiny-pipe-2"
    db.dispose()
