"""One training per output name at a time: a lock file holding the pids of fplora and its child.

The child (accelerate and musubi-tuner) runs in its own session, so it can outlive a killed fplora;
the lock stays taken while any pid in it is alive. A lock whose processes are all gone is taken over.

Deciding "stale, so mine now" is a read followed by a write: two fploras started at once over a
stale lock could both read it as stale and both go on, each believing it holds the run. That
decision (and the release) therefore happens under a short OS-level lock (`filelock`, an `flock`
that the kernel drops when its process dies) on a hidden guard file beside the lock, so exactly
one taker wins. The OS lock is held for moments only, never for the training: the pids in the lock
file stay what says "taken", since the training child, which outlives fplora, holds no OS lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from fplora.problems import Problem, UserError, display_path
from fplora.process import alive

# Taking or releasing the lock is a few file operations; a guard held longer than this belongs to a
# process stopped mid-way (a debugger, SIGSTOP), which the user should look at.
_GUARD_TIMEOUT_S = 10.0


class Lock:
    """A held lock: what `locked` hands its body, to record the child once it is started."""

    def __init__(self, path: Path):
        self.path = path

    def add(self, pid: int) -> None:
        """Record another process that writes the run (the training child), so the lock stays
        taken while it runs even if fplora itself is killed."""
        with self.path.open("a") as handle:
            handle.write(f"{pid}\n")


def _owners(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split() if line.strip().isdigit()]
    except OSError:
        return []


def lock_path(output_dir: Path, output_name: str) -> Path:
    return output_dir / f"{output_name}.lock"


def _guard_path(path: Path) -> Path:
    """The file the takeover decision is serialised on: hidden, so it never reads as a run's file
    (`runs/checkpoints.run_files` matches names starting with the output name)."""
    return path.with_name(f".{path.name}.guard")


def holder(path: Path) -> int | None:
    """The pid of a live process holding the lock at `path` (a training of this run), else None."""
    if not path.exists():
        return None
    return next((pid for pid in _owners(path) if alive(pid)), None)


@contextmanager
def _guarded(path: Path) -> Iterator[None]:
    """Hold the guard of `path` while deciding who owns it; refuse if it cannot be had in time."""
    try:
        with FileLock(_guard_path(path), timeout=_GUARD_TIMEOUT_S):
            yield
    except Timeout:
        raise UserError(
            Problem(
                display_path(_guard_path(path)),
                None,
                "",
                f"another fplora has held this run's lock guard for over {_GUARD_TIMEOUT_S:g} s",
                "look for a stopped fplora process (ps), or remove the file if none runs",
            )
        ) from None


def _take(path: Path) -> None:
    """Write this process's pid into the lock, or refuse naming the live holder. Call under the guard."""
    owner = holder(path)
    if owner is not None:
        raise UserError(
            Problem(
                display_path(path),
                None,
                "",
                f"another training (pid {owner}) is writing this run",
                "wait for it to finish, or stop it first",
            )
        )
    # absent, or stale (its processes are gone): under the guard, replacing it is safe
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)


def _release(path: Path) -> None:
    """Remove the lock if it is still ours: a lock file whose first pid is another process's was
    taken over by a process that could not see ours (another container or machine sharing the
    output folder, where our pids read as dead) and is not ours to drop."""
    with _guarded(path):
        owners = _owners(path)
        if not owners or owners[0] == os.getpid():
            path.unlink(missing_ok=True)


@contextmanager
def locked(path: Path) -> Iterator[Lock]:
    """Hold the run's lock for the body: refuse when a live process holds it, take over a stale one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _guarded(path):
        _take(path)
    try:
        yield Lock(path)
    finally:
        _release(path)
