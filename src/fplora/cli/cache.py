"""`fplora cache`."""

from __future__ import annotations

from typing import Annotated

import typer

from fplora.cli import common
from fplora.cli.options import DryRun, Gpu, SpecArg

NAME = "cache"
SHORT_HELP = "Cache latents and text-encoder outputs."


def command(
    spec: SpecArg = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Recompute caches even when complete and up to date.")
    ] = False,
    dry_run: DryRun = False,
    gpu: Gpu = None,
) -> None:
    """Cache latents (one-frame) and text-encoder outputs for every dataset of the spec.

    Example: fplora cache configs/v8.yaml
    """
    from fplora.jobs.cache import run_cache

    with common.user_errors():
        job = common.job(spec, dry_run=dry_run, gpu=gpu)
        raise typer.Exit(run_cache(job, rebuild=rebuild))
