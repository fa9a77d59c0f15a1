"""`fplora sheet`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fplora.cli import common, options

NAME = "sheet"
SHORT_HELP = None  # the docstring's first line


def command(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="The folder holding the infer folders, or a spec (its version's, where it infers"
            " into). Default: the last spec's outputs' sample/ folder.",
            show_default=False,
            callback=options.home,
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option("--version", help="Only this version's folders (v8). Default: every version."),
    ] = None,
) -> None:
    """Contact sheets from infer folders: checkpoints × multipliers.

    One PNG per prompt (rows are checkpoints, columns multipliers) and an index.html linking every
    image, rebuilt from the folders alone; written to DIRECTORY/<version>-sheet/.

    Example: fplora sheet configs/v8.yaml   (or a folder: fplora sheet /workspace/models/sample --version v8)
    """
    from fplora.jobs.sheet import run_sheet

    with common.user_errors():
        named = directory is not None and directory.suffix in (".yaml", ".yml")
        spec = common.load(directory if named else None, preset=False) if directory is None or named else None
        raise typer.Exit(run_sheet(None if named else directory, version, spec, its_version=named))
