"""`fplora render`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fplora.cli import common, options
from fplora.cli.options import Gpu, SpecArg

NAME = "render"
SHORT_HELP = "Write musubi-tuner's config, dataset and prompt files."


def command(
    spec: SpecArg = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder to render into (default configs/<version>/).", callback=options.home
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace files rendered from another spec or edited by hand.")
    ] = False,
    gpu: Gpu = None,
) -> None:
    """Write musubi-tuner's config.toml, dataset.toml and both prompt files for a spec.

    Example: fplora render configs/v8.yaml   (writes configs/v8/config.toml, ...)
    """
    from fplora.jobs.render import run_render

    with common.user_errors():
        raise typer.Exit(run_render(common.load(spec, gpu=gpu), out=out, force=force))
