"""Sinks: JSON Lines, retry-and-spool wrapper, and the PLC reject hook over a real HTTP server and a real command."""

from __future__ import annotations

import csv
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from inspect_app.engine.sinks import CsvSink, JsonLinesSink, RejectHookSink, ResilientSink
from inspect_app.errors import ConfigError
from inspect_app.records import Decision, Inspection


def _items(decisions: list[Decision], start: int = 0) -> list:
    """One item per decision; parts numbered from ``start`` (the content hash is a part's identity)."""
    return [
        (Inspection(station="s", line="l", source="cam", image_path=f"frame:{i}", decision=d, score=0.9,
                    content_hash=f"h{i}"), None, None)
        for i, d in enumerate(decisions, start)
    ]


class _Plc:
    """A real HTTP endpoint that fails while ``down`` is set and records what it accepted."""

    def __init__(self) -> None:
        self.down = False
        self.received: list[dict] = []
        plc = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if plc.down:
                    self.send_response(503)
                else:
                    plc.received.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/reject"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def plc() -> Iterator[_Plc]:
    endpoint = _Plc()
    yield endpoint
    endpoint.server.shutdown()


def test_webhook_outage_is_retried_spooled_and_replayed_in_order(plc: _Plc, tmp_path: Path) -> None:
    delays: list[float] = []
    sink = RejectHookSink(tmp_path / "spool" / "reject.jsonl", webhook=plc.url, retries=2, backoff_s=0.1,
                          sleep=delays.append)
    sink.write(_items([Decision.NG, Decision.OK, Decision.REVIEW]))
    assert [p["image_path"] for p in plc.received] == ["frame:0"]  # only NG triggers by default
    assert plc.received[0]["decision"] == "NG" and plc.received[0]["station"] == "s"

    plc.down = True
    sink.write(_items([Decision.OK, Decision.NG, Decision.NG]))
    assert delays == [0.1, 0.2]  # one signal retried with back-off, then it and the next one spooled in order
    assert [p["image_path"] for p in sink.pending()] == ["frame:1", "frame:2"]

    plc.down = False
    sink.write(_items([Decision.NG], start=3))
    assert [p["image_path"] for p in plc.received] == ["frame:0", "frame:1", "frame:2", "frame:3"]
    assert sink.pending() == [] and not sink.spool_path.exists()


def test_reject_command_gets_json_on_stdin_and_failures_are_spooled(tmp_path: Path) -> None:
    out = tmp_path / "signals.jsonl"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + chr(10))"
    sink = RejectHookSink(tmp_path / "reject.jsonl", command=f"{sys.executable} -c \"{script}\"",
                          decisions=("NG", "REVIEW"))
    sink.write(_items([Decision.NG, Decision.REVIEW, Decision.OK]))
    assert [json.loads(line)["decision"] for line in out.read_text().splitlines()] == ["NG", "REVIEW"]

    failing = RejectHookSink(tmp_path / "failed.jsonl", command="false", retries=1, sleep=lambda _s: None)
    failing.write(_items([Decision.NG]))
    assert failing.spooled == 1 and len(failing.pending()) == 1


def test_reject_hook_configuration_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        RejectHookSink(tmp_path / "x.jsonl")
    with pytest.raises(ConfigError, match=r"\['BAD'\]"):
        RejectHookSink(tmp_path / "x.jsonl", command="true", decisions=("BAD",))


def test_failing_sink_is_retried_then_rows_are_spooled(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    csv_sink = CsvSink(tmp_path / "ok.csv")
    csv_sink.path = blocker / "out.csv"  # the folder vanished under the sink: every write now fails for real
    blocker.write_text("a file where a folder should be")
    delays: list[float] = []
    guarded = ResilientSink(csv_sink, tmp_path / "spool", retries=2, backoff_s=0.05, sleep=delays.append)
    items = _items([Decision.NG, Decision.OK])
    assert guarded.write(items) == items
    assert delays == [0.05, 0.1]
    spooled = [json.loads(line) for line in guarded.spool_path.read_text().splitlines()]
    assert [row["image_path"] for row in spooled] == ["frame:0", "frame:1"]
    assert guarded.spool_path.name == "CsvSink.jsonl" and guarded.spooled == 2


def test_jsonl_sink_appends_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.jsonl"
    JsonLinesSink(path).write(_items([Decision.OK]))
    JsonLinesSink(path).write(_items([Decision.NG, Decision.ERROR], start=1))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["decision"] for r in rows] == ["OK", "NG", "ERROR"]
    assert rows[0]["created_at"].endswith("+00:00")


def test_webhook_failures_never_show_its_credentials(
    plc: _Plc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    plc.down = True
    for url in (f"{plc.url}?token=s3cret-token", f"http://127.0.0.1:{closed}/reject?key=s3cret-token"):
        sink = RejectHookSink(tmp_path / f"spool{len(url)}.jsonl", webhook=url, retries=1, sleep=lambda _s: None)
        with caplog.at_level("DEBUG"):
            sink.write(_items([Decision.NG]))
        assert sink.spooled == 1  # nothing lost
        assert "token=***" in caplog.text or "key=***" in caplog.text
        assert "s3cret-token" not in caplog.text
        caplog.clear()


def test_parts_sent_again_after_a_crash_get_one_line_and_one_signal(tmp_path: Path) -> None:
    out = tmp_path / "signals.jsonl"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + chr(10))"
    command = f"{sys.executable} -c \"{script}\""
    first = _items([Decision.NG, Decision.OK, Decision.NG])
    for sink in (CsvSink(tmp_path / "r.csv"), JsonLinesSink(tmp_path / "r.jsonl"),
                 RejectHookSink(tmp_path / "spool" / "reject.jsonl", command=command)):
        sink.write(first)
    # A re-run after kill -9 inspects the uncommitted batch again, through fresh sinks (a new process).
    again = first[1:] + _items([Decision.NG], start=3)
    for sink in (CsvSink(tmp_path / "r.csv"), JsonLinesSink(tmp_path / "r.jsonl"),
                 RejectHookSink(tmp_path / "spool" / "reject.jsonl", command=command)):
        sink.write(again)
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 1 + 4
    assert [json.loads(line)["image_path"] for line in (tmp_path / "r.jsonl").read_text().splitlines()] == [
        "frame:0", "frame:1", "frame:2", "frame:3"]
    assert [json.loads(line)["image_path"] for line in out.read_text().splitlines()] == [
        "frame:0", "frame:2", "frame:3"]


@pytest.mark.parametrize("name", ["r.csv", "r.jsonl"])
def test_a_line_cut_short_by_kill_9_is_dropped_and_its_part_written_whole(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    make = CsvSink if name.endswith(".csv") else JsonLinesSink
    make(path).write(_items([Decision.NG, Decision.OK]))
    whole = path.read_bytes()
    # kill -9 in the middle of the third part's line: half of it reached the disk, the database never heard of it.
    make(tmp_path / "scratch" / name).write(_items([Decision.NG], start=2))
    third = (tmp_path / "scratch" / name).read_bytes().splitlines(keepends=True)[-1]
    path.write_bytes(whole + third[: len(third) // 2])
    # The re-run inspects the third part again and one more.
    make(path).write(_items([Decision.NG, Decision.OK], start=2))
    lines = path.read_text().splitlines()
    if name.endswith(".csv"):
        rows = list(csv.DictReader(lines))
        assert [row["image_path"] for row in rows] == ["frame:0", "frame:1", "frame:2", "frame:3"]
    else:
        assert [json.loads(line)["image_path"] for line in lines] == ["frame:0", "frame:1", "frame:2", "frame:3"]


def test_evidence_that_could_not_be_written_is_spooled_with_its_arrays_and_replayed(tmp_path: Path) -> None:
    from dataclasses import replace

    from inspect_app.engine.sinks import HeatmapFileSink
    from inspect_app.records import Prediction

    ng_dir = tmp_path / "ng"
    ng_dir.write_text("a file where the evidence folder should be")  # unwritable, even for root
    rng = np.random.default_rng(0)
    items = []
    for i, (inspection, _, _) in enumerate(_items([Decision.NG, Decision.OK, Decision.NG])):
        image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
        heatmap = rng.random((48, 48)).astype(np.float32) if inspection.decision is Decision.NG else None
        prediction = Prediction(label="crack", score=0.9, decision=inspection.decision, heatmap=heatmap,
                                defect_class="crack")
        items.append((replace(inspection, content_hash=f"{i:016d}"), image, prediction))
    guarded = ResilientSink(HeatmapFileSink(ng_dir), tmp_path / "spool", retries=0)
    guarded.write(items)
    assert guarded.pending == 3 and guarded.replay() == 0  # still unwritable: kept for the next run
    assert len(list((tmp_path / "spool").glob("*.npz"))) == 3
    ng_dir.unlink()
    later = ResilientSink(HeatmapFileSink(ng_dir), tmp_path / "spool", retries=0)  # the next run
    assert later.replay() == 3 and later.pending == 0
    assert sorted(p.relative_to(ng_dir).as_posix() for p in ng_dir.rglob("*.jpg")) == [
        "00/00/0000000000000000.jpg", "00/00/0000000000000000_heatmap.jpg",
        "00/00/0000000000000002.jpg", "00/00/0000000000000002_heatmap.jpg"]
    assert not list((tmp_path / "spool").iterdir())  # spool and arrays removed once delivered


def _evidence_items(rng: np.random.Generator) -> list:
    """A camera frame and a file part, each NG with a heatmap, and an OK frame (pixels and hashes seeded)."""
    from inspect_app.records import Prediction

    items = []
    for index, (ref, decision) in enumerate(
        (("frame:4", Decision.NG), ("/line/parts/p7.png", Decision.NG), ("frame:5", Decision.OK))
    ):
        image = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        heatmap = rng.random((40, 40)).astype(np.float32) if decision is Decision.NG else None
        prediction = Prediction(label="crack", score=0.9, decision=decision, heatmap=heatmap, defect_class="crack")
        inspection = Inspection(station="s", line="l", source="cam", image_path=ref, decision=decision,
                                content_hash=f"{index:x}" * 64)
        items.append((inspection, image, prediction))
    return items


def test_evidence_is_filed_by_content_hash_and_frames_become_files(tmp_path: Path) -> None:
    from inspect_app.config.evidence import resolve_stored_path
    from inspect_app.data.image_io import read_image
    from inspect_app.engine.sinks import HeatmapFileSink

    root = tmp_path / "evidence"
    items = _evidence_items(np.random.default_rng(3))
    sink = HeatmapFileSink(root, save_image=False, ext=".png")
    written = sink.write(items)
    frame, part, ok = (inspection for inspection, _, _ in written)
    assert frame.image_path == f"evidence:00/00/{'0' * 64}.png"
    assert frame.heatmap_path == f"evidence:00/00/{'0' * 64}_heatmap.png"
    # The frame's picture is its own file now, lossless here, pixel for pixel.
    assert (read_image(resolve_stored_path(frame.image_path, root)) == items[0][1]).all()
    assert frame.content_hash == items[0][0].content_hash  # the frame identity the skip list compares stays
    # A file part keeps its own path; without save_image only its overlay is filed. OK parts get nothing.
    assert part.image_path == "/line/parts/p7.png" and part.heatmap_path == f"evidence:11/11/{'1' * 64}_heatmap.png"
    assert (ok.image_path, ok.heatmap_path) == ("frame:5", None)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == [f"00/00/{'0' * 64}.png", f"00/00/{'0' * 64}_heatmap.png", f"11/11/{'1' * 64}_heatmap.png"]
    sink.write(items)  # a re-run of the same parts overwrites, never duplicates
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == files


def test_evidence_outside_the_evidence_root_is_recorded_by_absolute_path(tmp_path: Path) -> None:
    from inspect_app.engine.sinks import HeatmapFileSink

    items = _evidence_items(np.random.default_rng(4))
    under = HeatmapFileSink(tmp_path / "root" / "line-2", evidence_root=tmp_path / "root").write(items[:1])
    assert under[0][0].image_path == f"evidence:line-2/00/00/{'0' * 64}.jpg"
    elsewhere = HeatmapFileSink(tmp_path / "demo", evidence_root=tmp_path / "root").write(items[:1])
    assert elsewhere[0][0].image_path == str(tmp_path / "demo" / "00" / "00" / f"{'0' * 64}.jpg")
    assert Path(elsewhere[0][0].image_path).is_file()
    with pytest.raises(ValueError, match=r"'\.tif' is not one of \['\.jpg', '\.png'\]"):
        HeatmapFileSink(tmp_path / "x", ext=".tif")
