"""The `fplora` command line: one module per verb (`cli/<verb>.py`: parse, call a job, exit with
its code), registered here in the order `fplora --help` lists them.

A verb module imports only typer and `cli/` at the top; the job (and pydantic, the YAML parser,
rich) is imported inside its command, so `fplora --help` stays fast. Nothing here imports torch,
accelerate, wandb or musubi-tuner.

A new verb: write `cli/<verb>.py` with NAME, SHORT_HELP and `command`, add it to VERBS.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fplora import __version__
from fplora.cli import (
    cache,
    check,
    dataset,
    doctor,
    evaluate,
    export,
    infer,
    init,
    models,
    plot,
    rehearse,
    render,
    runs,
    sheet,
    train,
)

HELP = "FramePack one-frame LoRA training with musubi-tuner, from one validated YAML spec per experiment."
EXAMPLE = """\b
Example:
  fplora init my-project && cd my-project
  fplora check configs/v1.yaml --skip-models    # before renting a GPU
  fplora train --cache                          # on the GPU box
  fplora infer --lora step5000 --multiplier 1.2 # then compare checkpoints
"""

VERBS = (
    init,
    models,
    dataset,
    check,
    rehearse,
    render,
    cache,
    train,
    infer,
    evaluate,
    export,
    doctor,
    runs,
    plot,
    sheet,
)

app = typer.Typer(
    name="fplora",
    help=HELP,
    epilog=EXAMPLE,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fplora {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """FramePack one-frame LoRA training with musubi-tuner, from one validated YAML spec per experiment."""


for verb in VERBS:
    if hasattr(verb, "app"):  # a verb with subcommands (`fplora models fetch`): its own Typer
        app.add_typer(verb.app, name=verb.NAME, help=verb.SHORT_HELP, short_help=verb.SHORT_HELP)
    else:
        app.command(verb.NAME, short_help=verb.SHORT_HELP)(verb.command)


def main() -> None:
    app()
