"""`fplora models fetch` and `fplora models check`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fplora.cli import common, options

NAME = "models"
SHORT_HELP = "Download the five models and tokenizers from the Hub; check them."

app = typer.Typer(
    name=NAME, help=SHORT_HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None
)

Dir = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Models folder (default: in a project, its spec's models.dir; else $FPLORA_MODELS_DIR,"
        " else /workspace/models).",
        show_default=False,
        callback=options.home,
    ),
]


def _folder(given: Path | None) -> Path:
    from fplora.jobs import models

    return models.folder(given, say=lambda text: typer.echo(text, err=True))


@app.command("fetch")
def fetch(
    directory: Dir = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the files and their total size; download nothing.")
    ] = False,
) -> None:
    """Download the DiT (lllyasviel/FramePackI2V_HY), the VAE and both text encoders
    (hunyuanvideo-community/HunyuanVideo), the SigLIP image encoder (lllyasviel/flux_redux_bfl) into the
    layout base.yaml names, and the tokenizers musubi-tuner loads into the Hugging Face cache.
    Resumable (run it again), several files at once; a token comes from HF_TOKEN (or `hf auth login`).

    Example: fplora models fetch --dir /workspace/models --dry-run
    """
    from fplora.jobs import models

    with common.user_errors():
        raise typer.Exit(models.fetch(_folder(directory), dry_run=dry_run, say=typer.echo))


@app.command("check")
def check(directory: Dir = None) -> None:
    """Check each model file (present, whole, the size the Hub gave) and the tokenizers; reads no network.

    Example: fplora models check --dir /workspace/models
    """
    from fplora.jobs import models
    from fplora.problems import UserError

    with common.user_errors():
        problems = models.check(_folder(directory), say=typer.echo)
        if problems:
            raise UserError(problems)
