"""Can fplora write there? A folder judged before writing, and a failed write said in one line.

A file where a folder should be, a folder without write permission or a read-only disk turned
`render`, `init`, `plot` and dry runs into tracebacks. These return the problem as text (what is
wrong, the fix), for each command to place at its file, spec line or option.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from fplora.problems import Problem, display_path


def folder_problem(folder: Path) -> tuple[str, str] | None:
    """(what is wrong, the fix) when `folder` cannot be a folder fplora writes into, else None.

    A folder not made yet is judged by the nearest existing path above it, where it would be made."""
    if folder.exists():
        if not folder.is_dir():
            return f"{display_path(folder)} is a file, not a folder", "name a folder (or move the file away)"
        if not os.access(folder, os.W_OK | os.X_OK):
            return (
                f"{display_path(folder)} is not writable",
                "name a folder you can write, or fix its permissions",
            )
        return None
    above = folder.absolute().parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        return (
            f"{display_path(folder)} cannot be made: {display_path(above)} is a file",
            "name a folder (or move the file away)",
        )
    if not os.access(above, os.W_OK | os.X_OK):
        return (
            f"{display_path(folder)} cannot be made: {display_path(above)} is not writable",
            "name a folder you can write, or fix the permissions",
        )
    return None


def _reason(error: OSError) -> str:
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.EROFS:
        return "the disk is read-only"
    if error.errno == errno.ENOSPC:
        return "no space left on the disk"
    if error.errno in (errno.ENOTDIR, errno.EEXIST):  # EEXIST: mkdir met a file
        return "a file is where a folder should be"
    return error.strerror or str(error)


def write_problem(path: Path, error: OSError, fix: str = "") -> Problem:
    """A failed write of `path` as one line: where, why, and (by default) the fix for the folder."""
    folder = path.parent
    return Problem(
        display_path(path),
        None,
        "",
        f"cannot write it: {_reason(error)}",
        fix or f"make {display_path(folder)} writable, or write elsewhere",
    )
