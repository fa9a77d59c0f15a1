"""One training per output name at a time: a lock file holding the pids of fplora and its child.

The child (accelerate and musubi-tuner) runs in its own session, so it can outlive a killed fplora;
the lock stays taken while any pid in it is alive. A lock whose processes are all gone is taken over.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fplora.problems import Problem, UserError, display_path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock:
    def __init__(self, path: Path):
        self.path = path

    def add(self, pid: int) -> None:
        """Record another process that writes the run (the training child)."""
        with self.path.open("a") as handle:
            handle.write(f"{pid}\n")


def _owners(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split() if line.strip().isdigit()]
    except OSError:
        return []


def lock_path(output_dir: Path, output_name: str) -> Path:
    return output_dir / f"{output_name}.lock"


def holder(path: Path) -> int | None:
    """The pid of a live process holding the lock at `path` (a training of this run), else None."""
    if not path.exists():
        return None
    return next((pid for pid in _owners(path) if _alive(pid)), None)


@contextmanager
def locked(path: Path) -> Iterator[Lock]:
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            alive = [pid for pid in _owners(path) if _alive(pid)]
            if alive:
                owner = alive[0]
                raise UserError(
                    Problem(
                        display_path(path),
                        None,
                        "",
                        f"another training (pid {owner}) is writing this run",
                        "wait for it to finish, or stop it first",
                    )
                ) from None
            path.unlink(missing_ok=True)  # stale: its owner is gone
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        break
    try:
        yield Lock(path)
    finally:
        path.unlink(missing_ok=True)
