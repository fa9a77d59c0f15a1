"""`fplora runs`."""

from __future__ import annotations

import typer

from fplora.cli import common
from fplora.cli.options import SpecArg

NAME = "runs"
SHORT_HELP = "Show a spec's run: segments, steps, checkpoints."


def command(spec: SpecArg = None) -> None:
    """Show a spec's training run: segments, global steps, checkpoints and states.

    Example: fplora runs configs/v8.yaml
    """
    from fplora.jobs.runs import run_runs

    with common.user_errors():
        raise typer.Exit(run_runs(common.load(spec, preset=False)))
