"""`fplora init`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fplora.cli import common

NAME = "init"
SHORT_HELP = "Start a project: specs per experiment, a dataset folder."


def command(
    directory: Annotated[Path, typer.Argument(help="Project folder (created if missing).")] = Path("."),
) -> None:
    """Start a project: configs/base.yaml (the house settings, commented), configs/v1.yaml (the first
    experiment, extending base.yaml), a dataset folder with a README, and a .gitignore for what fplora
    writes.

    Example: fplora init my-project
    """
    from fplora.jobs.init import run_init

    with common.user_errors():
        raise typer.Exit(run_init(directory))
