"""`fplora plot`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fplora.cli import common, options

NAME = "plot"
SHORT_HELP = "PNG of training and evaluation loss; several specs compare."


def command(
    specs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Specs whose runs to draw (default: the last spec used).",
            show_default=False,
            callback=options.homes,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="The PNG to write (default: configs/loss-<versions>.png).", callback=options.home
        ),
    ] = None,
    smoothing: Annotated[
        float,
        typer.Option("--smoothing", min=0.0, max=0.999, help="Training-loss smoothing, as TensorBoard's."),
    ] = 0.9,
) -> None:
    """Draw training loss (raw and smoothed) and evaluation loss against global step into a PNG.

    Training loss comes from musubi-tuner's TensorBoard logs when there are any (read without
    tensorboard), else from the console log fplora keeps (musubi-tuner's moving average);
    evaluation loss from `fplora eval`. Needs matplotlib: uv pip install 'fplora[plot]'.

    Example: fplora plot configs/v7.yaml configs/v8.yaml
    """
    from fplora.jobs.plot import run_plot

    with common.user_errors():
        given: list[Path | None] = list(specs) if specs else [None]
        raise typer.Exit(
            run_plot([common.load(path, preset=False) for path in given], out, smoothing=smoothing)
        )
