"""Sources: folders, globs, watched folders and OpenCV video/streams, with real files and real decoding."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_app.data.image_io import content_hash, write_image
from inspect_app.data.sources import FrameError, VideoSource, WatchFolderSource, glob_source, open_source
from inspect_app.errors import SourceError
from inspect_app.records import Frame


def _collect(source, limit: int = 1000) -> list:
    stop = threading.Event()
    out = []
    for item in source.frames(stop):
        out.append(item)
        if len(out) >= limit:
            stop.set()
    return out


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> Path:
    """JPEG, 16-bit PNG, RGBA PNG, BMP and TIFF images plus broken files, spread over sub-folders."""
    root = tmp_path / "in"
    rng = np.random.default_rng(1)
    write_image(root / "b" / "02.jpg", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    (root / "a").mkdir()
    cv2.imwrite(str(root / "a" / "16bit.png"), rng.integers(0, 65536, (30, 30), dtype=np.uint16))
    rgba = rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)
    cv2.imwrite(str(root / "a" / "rgba.png"), rgba)
    cv2.imwrite(str(root / "c.bmp"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "d.tif"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (root / "empty.jpg").write_bytes(b"")
    (root / "junk.png").write_bytes(b"not an image at all")
    jpeg = (root / "b" / "02.jpg").read_bytes()
    (root / "b" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / ".hidden.jpg").write_bytes(jpeg)
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_source_is_recursive_ordered_and_turns_bad_files_into_errors(mixed_folder: Path) -> None:
    source = open_source("folder", str(mixed_folder), station="s9", line="l2")
    items = _collect(source)
    refs = [Path(i.ref).relative_to(mixed_folder).as_posix() for i in items]
    assert refs == ["a/16bit.png", "a/rgba.png", "b/02.jpg", "b/truncated.jpg", "c.bmp", "d.tif", "empty.jpg",
                    "junk.png"]
    frames = [i for i in items if isinstance(i, Frame)]
    errors = {Path(i.ref).name: i.reason for i in items if isinstance(i, FrameError)}
    assert set(errors) == {"truncated.jpg", "empty.jpg", "junk.png"}
    assert "truncated" in errors["truncated.jpg"] and "empty" in errors["empty.jpg"]
    for frame in frames:
        assert frame.image.dtype == np.uint8 and frame.image.ndim == 3 and frame.image.shape[2] == 3
        assert frame.station == "s9" and frame.line == "l2" and frame.source == str(mixed_folder)
        assert frame.captured_at.utcoffset().total_seconds() == 0
        assert frame.content_hash == content_hash(Path(frame.ref).read_bytes())
    assert [f.index for f in frames] == [0, 1, 2, 4, 5]
    assert source.total == 8 and source.counters.frames == 5 and source.counters.errors == 3


def test_folder_source_skips_known_hashes(mixed_folder: Path) -> None:
    known = {content_hash((mixed_folder / "c.bmp").read_bytes())}
    source = open_source("folder", str(mixed_folder), skip_hashes=known)
    refs = [Path(i.ref).name for i in _collect(source)]
    assert "c.bmp" not in refs and len(refs) == 7
    assert source.counters.skipped == 1


def test_folder_source_oversized_image_is_an_error(tmp_path: Path) -> None:
    write_image(tmp_path / "big.png", np.zeros((100, 100, 3), np.uint8))
    items = _collect(open_source("folder", str(tmp_path), options={"max_pixels": 5000}))
    assert isinstance(items[0], FrameError) and "10000" in items[0].reason.replace(",", "").replace("_", "")


def test_glob_source(mixed_folder: Path) -> None:
    source = glob_source(str(mixed_folder / "**" / "*.png"))
    assert [Path(i.ref).name for i in _collect(source)] == ["16bit.png", "rgba.png", "junk.png"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_watch_folder_waits_until_a_file_is_completely_written(tmp_path: Path) -> None:
    clock = FakeClock()
    source = WatchFolderSource(tmp_path, settle_s=1.0, clock=clock)
    jpeg = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))[1].tobytes()
    partial = tmp_path / "part.jpg"
    partial.write_bytes(jpeg[:100])
    (tmp_path / ".upload.jpg.tmp").write_bytes(jpeg)
    assert source.ready_files() == []  # first sighting
    clock.now += 0.5
    with open(partial, "ab") as fh:  # still being written: its size changes
        fh.write(jpeg[100:])
    assert source.ready_files() == []
    clock.now += 0.6
    assert source.ready_files() == []  # unchanged for only 0.6 s
    clock.now += 0.5
    assert source.ready_files() == [partial]


def test_watch_folder_yields_each_file_once_until_stopped(tmp_path: Path) -> None:
    clock = FakeClock()
    stop = threading.Event()
    calls = {"n": 0}

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        calls["n"] += 1
        if calls["n"] == 2:
            write_image(tmp_path / "late.png", np.zeros((8, 8, 3), np.uint8))
        if calls["n"] == 8:
            stop.set()

    write_image(tmp_path / "early.png", np.zeros((8, 8, 3), np.uint8))
    source = WatchFolderSource(tmp_path, poll_s=0.5, settle_s=0.5, clock=clock, sleep=sleep)
    names = [Path(i.ref).name for i in source.frames(stop)]
    assert names == ["early.png", "late.png"]


def _write_video(path: Path, frames: int, size: tuple[int, int] = (64, 48)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        image = np.zeros((size[1], size[0], 3), np.uint8)
        image[:, :, 2] = 20 * i  # BGR red channel grows: lets the test check colour order and frame order
        writer.write(image)
    writer.release()


def test_video_file_source_reads_every_frame_in_rgb(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    _write_video(video, 6)
    source = open_source("video", str(video), station="cam-st")
    frames = _collect(source)
    assert [f.ref for f in frames] == [f"frame:{i}" for i in range(6)]
    assert all(f.image.shape == (48, 64, 3) and f.station == "cam-st" for f in frames)
    reds = [int(f.image[..., 0].mean()) for f in frames]
    assert reds == sorted(reds) and reds[-1] > 80 and frames[-1].image[..., 2].mean() < 10
    assert not source.live and source.counters.gaps == []


def test_live_source_reconnects_with_backoff_records_gaps_and_gives_up_cleanly(tmp_path: Path) -> None:
    video = tmp_path / "stream.avi"
    _write_video(video, 5)
    hidden = tmp_path / "away.avi"
    clock = FakeClock()
    calls = {"n": 0}

    def sleep(seconds: float) -> None:
        # The camera goes away at the first outage, comes back before the second attempt, and is gone for good later.
        clock.sleep(seconds)
        calls["n"] += 1
        if calls["n"] in (1, 3):
            video.rename(hidden)
        if calls["n"] == 2:
            hidden.rename(video)

    source = VideoSource(str(video), live=True, backoff_s=0.5, max_backoff_s=0.8, max_attempts=2, sleep=sleep,
                         clock=clock)
    frames = _collect(source)
    assert len(frames) == 10  # played twice: before and after the reconnection
    assert [f.index for f in frames] == list(range(10))
    assert source.delays == [0.5, 0.8, 0.5, 0.8]  # doubled, capped at max_backoff_s
    first, second = source.counters.gaps
    assert first.ended_at is not None and first.attempts == 2 and first.seconds == pytest.approx(1.3)
    assert second.ended_at is None and second.attempts == 2


def test_live_source_stops_promptly_during_backoff(tmp_path: Path) -> None:
    source = VideoSource(str(tmp_path / "never.avi"), live=True, backoff_s=30.0, max_backoff_s=30.0)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert list(source.frames(stop)) == []
    assert source.counters.gaps[0].ended_at is None


@pytest.mark.parametrize(
    ("kind", "target", "options", "message"),
    [
        ("kinect", "0", None, "'kinect' is not one of folder, glob"),
        ("camera", "front", None, "'front' is not a camera index"),
        ("video", "/no/such.avi", None, "does not exist"),
        ("stream", "ftp-ish", None, "neither a URL"),
        ("folder", "/no/such/folder", None, "not found"),
        ("folder", ".", {"poll_s": 1}, r"unknown option\(s\) \['poll_s'\]; allowed: \['max_pixels', 'recursive'\]"),
    ],
)
def test_open_source_errors_name_the_value(kind: str, target: str, options: dict | None, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(kind, target, options=options)


def test_video_file_rerun_skips_frames_already_inspected(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    _write_video(video, 5)
    first = _collect(open_source("video", str(video)))
    done = {f.content_hash for f in first[:3]}
    again = open_source("video", str(video), skip_hashes=done)
    rest = _collect(again)
    assert [f.ref for f in rest] == ["frame:3", "frame:4"]
    assert again.counters.skipped == 3
