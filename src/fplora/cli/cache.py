"""`fplora cache`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fplora.cli import common, options
from fplora.cli.options import DryRun, Gpu, NoRehearse, SpecArg

NAME = "cache"
SHORT_HELP = "Cache latents and text-encoder outputs."


SUBCOMMANDS = ("status", "prune")


def command(
    spec: SpecArg = None,
    more: Annotated[
        list[Path] | None,
        typer.Argument(
            help="With `status`: the specs to show (default: every spec under configs/).",
            show_default=False,
            callback=options.homes,
        ),
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Recompute caches even when complete and up to date.")
    ] = False,
    dry_run: DryRun = False,
    no_rehearse: NoRehearse = False,
    gpu: Gpu = None,
) -> None:
    """Cache latents (one-frame) and text-encoder outputs for every dataset of the spec, into the
    project's cache store (.fplora/cache-store/), shared by every version; each dataset's cache folder
    becomes a view of links into it.

    `fplora cache status [SPEC...]`: per spec and dataset, the files present, to link, missing and
    stale, and the store's size. `fplora cache prune --dry-run`, then `fplora cache prune`: remove the
    store entries no spec under configs/ uses.

    Example: fplora cache configs/v8.yaml
    """
    from fplora.jobs.cache_status import cache_spec, run_subcommand

    word = str(spec) if spec is not None else ""
    with common.user_errors():
        if word in SUBCOMMANDS and not Path(word).is_file():
            raise typer.Exit(run_subcommand(word, more or [], dry_run=dry_run, say=typer.echo))
        if more:
            common.fail("SPEC", f"one spec only (got {len(more) + 1}); several are for `fplora cache status`")
        loaded = common.load(spec, gpu=gpu)
        code = cache_spec(
            loaded,
            rebuild=rebuild,
            dry_run=dry_run,
            no_rehearse=no_rehearse,
            say=lambda text: typer.echo(text, err=True),
        )
        raise typer.Exit(code)
