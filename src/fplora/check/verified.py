"""Every image decoded once: verdicts remembered by path, size and modification time.

`fplora check` must know that every target and control image decodes (`check.images`), and a
10,000-record one-frame dataset is 30,000 files: decoding them all takes minutes for real-sized
images, so it is done once. The verdict (the size, or why the file cannot be used) is kept in the
project's `.fplora/images.json`, keyed by the absolute path and valid while the file's size and
modification time (nanoseconds) stay the same; a repeated check then only `stat`s each file. A file
rewritten in place gets a new time, so it is decoded again.

Several fplora commands may check at once (a `train` beside a `check`): the store is replaced in one
rename, so a reader sees the old or the new file, and writers merge under a file lock. The store is
tied to the Pillow version (a newer one may read what an older could not) and to its own format.

Decoding is shared with helper processes once the rest would take long enough for them to pay
(threads would not do: small images spend their time in Python, which holds the GIL), with a progress
bar on a terminal once it has taken a few seconds, so that a short check prints nothing extra.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import PIL

from fplora.atomic import write_atomic
from fplora.check.images import NOT_FOUND, ImageInfo, decode_stat

if TYPE_CHECKING:
    from concurrent.futures import Future

STORE_NAME = "images.json"
STORE_FORMAT = 1

ESTIMATE_AFTER = 0.02
"""Seconds of decoding in this process before the time of the rest is estimated from it."""

PARALLEL_FROM = 0.15
"""Estimated seconds of decoding left from which helper processes pay: starting one costs tens of
milliseconds; a tiny PNG is checked in ~0.03 ms, a 1024-pixel one in ~10 ms, so the time taken so far,
not the count, says whether they do."""

CHUNK_SECONDS = 0.1
"""Decoding time of one task: each task's paths and results cost ~1 ms to pass between processes (a
task of 256 small PNGs lost ~5 % of the decoding time to that), and the bar still moves often."""

PROGRESS_AFTER = 2.0
"""Seconds of decoding before the progress bar appears."""

LOCK_WAIT = 10.0
"""Seconds to wait for another command's write of the store; past that the verdicts are not kept."""

Entry = list[Any]  # [bytes, mtime_ns, width, height] or [bytes, mtime_ns, error, fix]


def verify_many(
    paths: Iterable[str], state_dir: Path | None = None, *, progress: bool = True
) -> dict[str, ImageInfo]:
    """Each distinct path's verdict: remembered under `state_dir` when its file is unchanged,
    else decoded now (and remembered, when `state_dir` is given).

    Only paths with a stored verdict are `stat`ed here; the others are decoded straight away, and the
    worker that decodes a file reads its size and time from the open file."""
    unique = list(dict.fromkeys(paths))
    store = _Store(state_dir) if state_dir is not None else None
    known = store.load() if store is not None else {}
    sizes: dict[tuple[int, int], ImageInfo] = {}  # one shared ImageInfo per distinct size
    results: dict[str, ImageInfo] = {}
    todo: list[tuple[str, str]] = []  # path, key
    gone: list[str] = []
    isabs, abspath, stat = os.path.isabs, os.path.abspath, os.stat
    for path in unique:
        key = path if isabs(path) else abspath(path)
        entry = known.get(key)
        if entry is None:
            todo.append((path, key))
            continue
        try:
            found = stat(path)
        except FileNotFoundError:
            results[path] = NOT_FOUND
            gone.append(key)
            continue
        except OSError:  # decoding will say why (not a folder on the way, permission)
            todo.append((path, key))
            continue
        if entry[0] == found.st_size and entry[1] == found.st_mtime_ns:
            width, height = entry[2], entry[3]
            if type(width) is int:  # a good image: one shared ImageInfo per size
                info = sizes.get((width, height))
                results[path] = info if info is not None else _info((width, height), sizes)
            else:
                results[path] = ImageInfo(error=width, fix=height)
        else:
            todo.append((path, key))
    decoded = _decode_all([path for path, _ in todo], progress=progress)
    new: dict[str, Entry] = {}
    for (path, key), (size, mtime, result) in zip(todo, decoded, strict=True):
        info = _info(result, sizes)
        results[path] = info
        if info.lasting and size >= 0:
            new[key] = _entry(size, mtime, info)
        elif info is NOT_FOUND and key in known:
            gone.append(key)
    if store is not None and (new or gone):
        store.save(new, gone)
    return results


def _entry(size: int, mtime: int, info: ImageInfo) -> Entry:
    if info.size is not None:
        return [size, mtime, *info.size]
    return [size, mtime, info.error, info.fix]


def _info(result: tuple[int, int] | ImageInfo, sizes: dict[tuple[int, int], ImageInfo]) -> ImageInfo:
    if isinstance(result, ImageInfo):
        return result
    info = sizes.get(result)
    if info is None:
        info = sizes[result] = ImageInfo(size=result)
    return info


class _Store:
    """`.fplora/images.json`: {"format", "pillow", "images": {absolute path: Entry}}."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / STORE_NAME
        self.lock = folder / f"{STORE_NAME}.lock"

    def load(self) -> dict[str, Entry]:
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):  # none yet, unreadable or half-written by hand: start afresh
            return {}
        if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
            return {}
        if data.get("pillow") != PIL.__version__:
            return {}
        images = data.get("images")
        return images if isinstance(images, dict) else {}

    def save(self, new: dict[str, Entry], gone: list[str]) -> None:
        """Merge into what is on disk now (another command may have saved since this one read)."""
        from filelock import FileLock, Timeout  # here: a repeated check saves nothing

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.lock), timeout=LOCK_WAIT):
                images = self.load()
                images.update(new)
                for key in gone:
                    images.pop(key, None)
                data = {"format": STORE_FORMAT, "pillow": PIL.__version__, "images": images}
                write_atomic(self.path, json.dumps(data, separators=(",", ":")))
        except (OSError, Timeout):
            pass  # a read-only project or a stuck lock: the next check decodes these again


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


Decoded = tuple[int, int, tuple[int, int] | ImageInfo]
"""(bytes, mtime_ns, size or verdict) of one file; a good image's verdict travels as its bare size."""


def _decode_chunk(paths: list[str]) -> list[Decoded]:
    """Worker-process entry point: one task decodes a whole chunk, so results travel in bulk."""
    out: list[Decoded] = []
    for path in paths:
        size, mtime, info = decode_stat(path)
        out.append((size, mtime, info.size if info.ok and info.size is not None else info))
    return out


def _ignore_interrupt() -> None:
    """Workers leave Ctrl-C to the parent, which cancels what has not started."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_all(paths: list[str], *, progress: bool) -> list[Decoded]:
    """Decode here for `ESTIMATE_AFTER` seconds; if the rest would take `PARALLEL_FROM` seconds or
    more, share it with helper processes (one fewer than the CPUs: this process decodes too, rather
    than wait), else go on here alone."""
    helpers = min(_workers(), 8) - 1
    out: list[Decoded] = []
    with _bar(len(paths), enabled=progress) as advance:
        start = time.monotonic()
        for index, path in enumerate(paths):
            out.extend(_decode_chunk([path]))
            advance(1)
            taken, done = time.monotonic() - start, index + 1
            if helpers and taken >= ESTIMATE_AFTER and taken / done * (len(paths) - done) >= PARALLEL_FROM:
                try:
                    out.extend(_shared(paths[done:], taken / done, helpers, advance))
                    return out
                except (OSError, RuntimeError):  # no processes to be had (sandbox, limits): go on here
                    helpers = 0
    return out


def _shared(paths: list[str], each: float, helpers: int, advance: _Bar) -> list[Decoded]:
    """Decode `paths` here and in `helpers` processes, in tasks of ~`CHUNK_SECONDS` (`each` is the
    time one image has taken) that shrink towards the end, so that all finish at about the same time.
    Each helper has one task queued behind the one it decodes, so it never waits for this process."""
    # imported here: a repeated check decodes nothing, and the command should start fast
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    target = max(1, int(CHUNK_SECONDS / each))
    results: dict[int, list[Decoded]] = {}  # by the task's first index
    pending: dict[Future[list[Decoded]], tuple[int, int]] = {}
    at = 0

    def take() -> tuple[int, int]:
        nonlocal at
        size = max(1, min(target, (len(paths) - at) // (2 * (helpers + 1))))
        at += size
        return at - size, at

    def collect(done: Iterable[Future[list[Decoded]]]) -> None:
        for future in done:
            first, end = pending.pop(future)
            results[first] = future.result()
            advance(end - first)

    pool = ProcessPoolExecutor(max_workers=helpers, initializer=_ignore_interrupt)
    try:
        while at < len(paths):
            while at < len(paths) and len(pending) < 2 * helpers:
                first, end = take()
                pending[pool.submit(_decode_chunk, paths[first:end])] = first, end
            if at < len(paths):
                first, end = take()
                results[first] = _decode_chunk(paths[first:end])
                advance(end - first)
            collect([future for future in pending if future.done()])
        while pending:
            collect(wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)[0])
            advance(0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [result for first in sorted(results) for result in results[first]]


class _Bar:
    """`advance(n)`: a rich progress bar on stderr, started only once decoding has taken
    `PROGRESS_AFTER` seconds, and only on a terminal; gone when done."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.start = time.monotonic()
        self.count = 0
        self.progress: Any = None
        self.task: Any = None

    def __call__(self, step: int) -> None:
        self.count += step
        if self.progress is not None:
            self.progress.update(self.task, completed=self.count)
        elif self.enabled and time.monotonic() - self.start >= PROGRESS_AFTER:
            self.enabled = False  # decided once
            self._show()

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self.progress = Progress(
            "decoding images once (remembered in .fplora/)",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("decode", total=self.total, completed=self.count)


@contextmanager
def _bar(total: int, *, enabled: bool) -> Iterator[_Bar]:
    bar = _Bar(total, enabled=enabled)
    try:
        yield bar
    finally:
        if bar.progress is not None:
            bar.progress.stop()
