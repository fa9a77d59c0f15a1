"""`fplora sheet`: contact sheets of a folder's infer folders, the index pages' paths printed."""

from __future__ import annotations

from pathlib import Path

from fplora.jobs import output
from fplora.problems import Problem, UserError
from fplora.sheet.draw import build


def run_sheet(directory: Path, version: str | None) -> int:
    if not directory.is_dir():
        raise UserError(
            Problem("command line", None, "DIRECTORY", f"{output.shown(directory)} is not a folder")
        )
    indexes = build(directory, version)
    if not indexes:
        which = f"{version}-" if version else "<version>-"
        raise UserError(
            Problem(
                "command line",
                None,
                "DIRECTORY",
                f"{output.shown(directory)} holds no infer folder"
                f" ({which}stepNNNNNNNN-lm<m> with fplora-infer.json)",
            )
        )
    for index in indexes:
        output.line(output.shown(index))
    return 0
