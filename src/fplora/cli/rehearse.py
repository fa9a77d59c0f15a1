"""`fplora rehearse`."""

from __future__ import annotations

from typing import Annotated

import typer

from fplora.cli import common
from fplora.cli.options import Gpu, SpecArg

NAME = "rehearse"
SHORT_HELP = "Run the spec's commands on tiny stand-in models, before GPU time."


def command(
    spec: SpecArg = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rehearse even when nothing changed since the last pass.")
    ] = False,
    time_limit: Annotated[
        float,
        typer.Option(
            "--time-limit",
            metavar="<seconds>",
            help="Seconds a stage may take, whatever it does, before it counts as hung.",
        ),
    ] = 300.0,
    idle_limit: Annotated[
        float,
        typer.Option(
            "--idle-limit",
            metavar="<seconds>",
            help="Seconds a stage may go without output and without using CPU before it counts as hung.",
        ),
    ] = 30.0,
    gpu: Gpu = None,
) -> None:
    """Run what train, cache and infer would run, with musubi-tuner's own code, on tiny stand-in models
    that fplora makes (no model file, no GPU needed): caching, 2 training steps with sampling, a resume,
    generate, a sweep cell and the evaluation worker, each on a few real records. A failure names the
    stage, musubi-tuner's error and the spec lines involved.

    Example: fplora rehearse configs/v8.yaml
    """
    from fplora.jobs.rehearse import run_rehearse

    with common.user_errors():
        raise typer.Exit(
            run_rehearse(common.load(spec, gpu=gpu), force=force, limit=time_limit, idle=idle_limit)
        )
