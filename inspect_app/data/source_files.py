"""File sources: a fixed list of image files (folder, glob) and a watched folder that inspects new files once."""

from __future__ import annotations

import glob as globlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from inspect_app.data.folders import list_images
from inspect_app.data.image_io import DEFAULT_MAX_PIXELS, content_hash, decode_image, is_image_path
from inspect_app.data.source_base import Captured, Source
from inspect_app.errors import DatasetError, ImageDecodeError, SourceError
from inspect_app.records import utcnow


class FileListSource(Source):
    """Decodes a fixed, stably ordered list of image files; never drops one.

    Args:
        name: source reference written into rows.
        paths: files in the order to inspect them.
        skip_hashes: content hashes already inspected; such files are counted as skipped and not decoded.
        max_pixels: largest accepted image (width x height); larger ones become errors.
        station: station name.
        line: production line.
    """

    kind = "folder"

    def __init__(
        self,
        name: str,
        paths: list[Path],
        skip_hashes: set[str] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        station: str = "station-1",
        line: str = "line-1",
    ) -> None:
        super().__init__(name, station, line)
        self.paths = list(paths)
        self.skip_hashes = skip_hashes if skip_hashes is not None else set()
        self.skip_paths: set[str] = set()  # unreadable files whose ERROR row an earlier run wrote
        self.max_pixels = max_pixels

    @property
    def total(self) -> int | None:
        """Number of files listed."""
        return len(self.paths)

    def frames(self, stop: threading.Event) -> Iterator[Captured]:
        """Read, hash and decode each file in order; unreadable ones become ``FrameError``."""
        for index, path in enumerate(self.paths):
            if stop.is_set():
                return
            item = read_file_item(self, path, index)
            if item is not None:
                yield item


def read_file_item(source: FileListSource | WatchFolderSource, path: Path, index: int) -> Captured | None:
    """One file as a ``Frame``/``FrameError``, or ``None`` when its content hash says it was already inspected.

    The capture time is when reading started, so the pipeline's capture stage covers reading and decoding.
    """
    captured_at = utcnow()
    try:
        data = path.read_bytes()
    except OSError as exc:
        if str(path) in getattr(source, "skip_paths", ()):
            source.counters.skipped += 1  # its ERROR row was written by an earlier run
            return None
        return source._error(str(path), f"{path}: cannot read file ({exc.strerror or exc})", index, None, captured_at)
    digest = content_hash(data)
    if digest in source.skip_hashes:
        source.counters.skipped += 1
        return None
    try:
        image = decode_image(data, name=str(path), max_pixels=source.max_pixels)
    except ImageDecodeError as exc:
        return source._error(str(path), str(exc), index, digest, captured_at)
    return source._frame(image, str(path), digest, index, captured_at)


def folder_source(
    folder: str | os.PathLike[str], recursive: bool = True, **kwargs: Any
) -> FileListSource:
    """Every image under ``folder`` (recursive by default), sorted by relative path."""
    try:
        paths = list_images(folder, recursive=recursive)
    except DatasetError as exc:
        raise SourceError(f"folder source: {exc}") from exc
    return FileListSource(str(folder), paths, **kwargs)


def glob_source(pattern: str, **kwargs: Any) -> FileListSource:
    """Image files matching a glob pattern (``**`` recurses), sorted by path."""
    paths = sorted(Path(p) for p in globlib.glob(pattern, recursive=True) if is_image_path(p) and Path(p).is_file())
    source = FileListSource(pattern, paths, **kwargs)
    source.kind = "glob"
    return source


class WatchFolderSource(Source):
    """Watches a folder and inspects each new image once it is completely written.

    A file counts as complete when its size and modification time have not changed for ``settle_s`` seconds (and it
    is not empty); hidden files (``.name.tmp``) are ignored, so writers that rename into place are picked up at once.
    Files already present at start are inspected too (the content-hash skip makes restarts idempotent).

    Args:
        folder: folder to watch (recursively).
        poll_s: seconds between directory scans.
        settle_s: how long a file must stay unchanged before it is read.
        skip_hashes: content hashes already inspected.
        max_pixels: largest accepted image.
        station: station name.
        line: production line.
        sleep: injected sleep (tests).
        clock: injected monotonic clock (tests).
    """

    kind = "watch"
    live = False  # never drop: a watched folder is a queue of files, not a stream of frames

    def __init__(
        self,
        folder: str | os.PathLike[str],
        poll_s: float = 0.5,
        settle_s: float = 1.0,
        skip_hashes: set[str] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        station: str = "station-1",
        line: str = "line-1",
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(str(folder), station, line)
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"watch source: folder {str(self.folder)!r} does not exist or is not a directory")
        self.poll_s = poll_s
        self.settle_s = settle_s
        self.skip_hashes = skip_hashes if skip_hashes is not None else set()
        self.max_pixels = max_pixels
        self._sleep = sleep
        self._clock = clock
        self._seen: dict[Path, tuple[int, int, float]] = {}
        self._done: set[Path] = set()

    def ready_files(self) -> list[Path]:
        """One scan: files that have been stable for ``settle_s`` and were not handled yet, in path order."""
        now = self._clock()
        ready = []
        for path in list_images(self.folder):
            if path in self._done:
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            signature = (st.st_size, st.st_mtime_ns)
            previous = self._seen.get(path)
            if previous is None or previous[:2] != signature:
                self._seen[path] = (*signature, now)
                continue
            if st.st_size > 0 and now - previous[2] >= self.settle_s:
                ready.append(path)
        return ready

    def frames(self, stop: threading.Event) -> Iterator[Captured]:
        """Scan every ``poll_s`` until ``stop`` is set; yield each completed file once."""
        index = 0
        while not stop.is_set():
            for path in self.ready_files():
                self._done.add(path)
                self._seen.pop(path, None)
                item = read_file_item(self, path, index)
                index += 1
                if item is not None:
                    yield item
            if self._sleep is not None:
                self._sleep(self.poll_s)
            else:
                stop.wait(self.poll_s)
