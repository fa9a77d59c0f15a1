"""`fplora check`."""

from __future__ import annotations

from typing import Annotated

import typer

from fplora.cli import common
from fplora.cli.options import Gpu, SpecArg

NAME = "check"
SHORT_HELP = "Validate a spec and all it names, before GPU time."


def command(
    spec: SpecArg = None,
    skip_models: Annotated[
        bool,
        typer.Option("--skip-models", help="Check everything but the model files (prepare data anywhere)."),
    ] = False,
    rehearse: Annotated[
        bool,
        typer.Option(
            "--rehearse", help="Also rehearse the spec's commands on stand-in models (fplora rehearse)."
        ),
    ] = False,
    gpu: Gpu = None,
) -> None:
    """Validate a spec and everything it points to, before any GPU time is spent.

    Example: fplora check configs/v8.yaml --skip-models
    """
    from fplora.jobs.check import load_checked, run_check

    with common.user_errors(summary=True):
        loaded = load_checked(lambda: common.load(spec, gpu=gpu, all_notes=True), skip_models=skip_models)
        code = run_check(loaded, skip_models=skip_models)
        if code == 0 and rehearse:
            from fplora.jobs.rehearse import run_rehearse

            code = run_rehearse(loaded)
        raise typer.Exit(code)
