"""A rendered file's stamp: the spec that wrote it, by a path relative to the file, and a digest of
what was written.

The header's `# fplora-spec:` line names the spec by its absolute path, so a project folder moved
(rsync to a pod) read as another spec's files and every command refused until `render --force`.
The stamp names it relative to the rendered file, which moves with the project. Its digest tells a
file edited by hand since fplora wrote it, which a later render must not replace unsaid.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from fplora.render.files import HEADER_MARK

STAMP_MARK = "# fplora-written: "
_HEAD_LINES = 4  # the header's lines and the stamp: where to look


@dataclass(frozen=True)
class Stamp:
    spec: Path  # the spec that wrote the file, resolved
    edited: bool  # the file differs from what fplora wrote
    unstamped: str  # the file's text without its stamp line


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def stamped(path: Path, text: str, spec_path: Path) -> str:
    """`text` as written to `path`: the stamp after the header's spec line (a text without a header,
    a data copy, is written as it is)."""
    lines = text.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines[:_HEAD_LINES]) if line.startswith(HEADER_MARK)), None)
    if at is None:
        return text
    relative = Path(os.path.relpath(spec_path.absolute(), path.parent.absolute())).as_posix()
    line = f"{STAMP_MARK}sha256={_digest(text)} spec={relative}\n"
    return "".join([*lines[: at + 1], line, *lines[at + 1 :]])


def read_stamp(path: Path) -> Stamp | None:
    """The stamp of the file at `path`; None for a file without one (absent, unreadable, not
    fplora's, or written by an fplora before stamps)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines[:_HEAD_LINES]):
        if not line.startswith(STAMP_MARK):
            continue
        digest, sep, relative = line[len(STAMP_MARK) :].rstrip("\n").partition(" spec=")
        if not sep or not digest.startswith("sha256="):
            return None
        rest = "".join([*lines[:index], *lines[index + 1 :]])
        spec = (path.parent / relative).resolve()
        return Stamp(spec, _digest(rest) != digest.removeprefix("sha256="), rest)
    return None
