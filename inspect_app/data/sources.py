"""Image sources: camera index, RTSP/HTTP stream, video file, image folder, watched folder and glob.

Every source yields ``Frame`` records (decoded RGB uint8 plus source, station/line, index or path and the UTC capture
time) or ``FrameError`` records for inputs that could not be read, so that a bad file becomes an error row instead of
stopping the run. Sources run in capture threads and check a ``threading.Event`` so that Ctrl-C stops them promptly.

Live sources (camera, stream) never end on their own: when a read fails they reconnect with exponential back-off
and record the gap. File sources (folder, glob, video file) end after their last frame and never drop anything.

This module builds a source from its declared kind (``open_source``); the sources live in ``data.source_files``
(folder, glob, watched folder) and ``data.source_video`` (camera, stream, video file), their base in
``data.source_base``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspect_app.config import SOURCE_KINDS
from inspect_app.data.source_base import Captured, FrameError, Gap, Source, SourceCounters
from inspect_app.data.source_files import FileListSource, WatchFolderSource, folder_source, glob_source, read_file_item
from inspect_app.data.source_video import VideoSource
from inspect_app.errors import SourceError

__all__ = [
    "LIVE_KINDS", "STREAM_SCHEMES", "Captured", "FileListSource", "FrameError", "Gap", "Source", "SourceCounters",
    "VideoSource", "WatchFolderSource", "folder_source", "glob_source", "open_source", "read_file_item",
]

LIVE_KINDS = frozenset({"stream", "camera"})
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


def open_source(
    kind: str,
    target: str,
    station: str = "station-1",
    line: str = "line-1",
    skip_hashes: set[str] | None = None,
    live: bool | None = None,
    options: dict[str, Any] | None = None,
) -> Source:
    """Build a source from its declared kind and target.

    Args:
        kind: one of ``SOURCE_KINDS``.
        target: folder path, glob pattern, video file, stream URL or camera index.
        station: station name stamped on frames.
        line: production line stamped on frames.
        skip_hashes: content hashes / frame identities already inspected (file sources and video files).
        live: override whether frames may be dropped and failures reconnected (default: camera/stream are live).
        options: kind-specific settings (``recursive``, ``poll_s``, ``settle_s``, ``backoff_s``, ``max_backoff_s``,
            ``max_attempts``, ``pace_fps``, ``max_pixels``).

    Raises:
        SourceError: unknown kind, bad target or unknown option, naming the value and the allowed ones.
    """
    options = dict(options or {})
    allowed = {
        "folder": {"recursive", "max_pixels"},
        "glob": {"max_pixels"},
        "watch": {"poll_s", "settle_s", "max_pixels"},
        "video": {"backoff_s", "max_backoff_s", "max_attempts", "pace_fps"},
        "stream": {"backoff_s", "max_backoff_s", "max_attempts", "pace_fps"},
        "camera": {"backoff_s", "max_backoff_s", "max_attempts", "pace_fps"},
    }
    if kind not in allowed:
        raise SourceError(f"source kind {kind!r} is not one of {', '.join(SOURCE_KINDS)}")
    unknown = sorted(set(options) - allowed[kind])
    if unknown:
        raise SourceError(f"{kind} source: unknown option(s) {unknown}; allowed: {sorted(allowed[kind])}")
    common: dict[str, Any] = {"station": station, "line": line}
    if kind == "folder":
        return folder_source(target, skip_hashes=skip_hashes, **options, **common)
    if kind == "glob":
        return glob_source(target, skip_hashes=skip_hashes, **options, **common)
    if kind == "watch":
        return WatchFolderSource(target, skip_hashes=skip_hashes, **options, **common)
    if kind == "camera":
        try:
            index: str | int = int(target)
        except ValueError as exc:
            raise SourceError(f"camera source: {target!r} is not a camera index (0, 1, ...)") from exc
        return VideoSource(index, live=True if live is None else live, **options, **common)
    if kind == "stream" and not str(target).lower().startswith(STREAM_SCHEMES) and not Path(target).exists():
        raise SourceError(f"stream source: {target!r} is neither a URL ({', '.join(STREAM_SCHEMES)}) nor a file")
    if kind == "video" and not Path(target).is_file():
        raise SourceError(f"video source: file {target!r} does not exist")
    default_live = kind in LIVE_KINDS
    source = VideoSource(
        str(target), live=default_live if live is None else live, skip_hashes=skip_hashes, **options, **common
    )
    source.kind = kind
    return source
