"""`fplora dataset init` and `fplora dataset stats`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fplora.cli import common, options
from fplora.cli.options import Gpu, SpecArg

NAME = "dataset"
SHORT_HELP = "Dataset JSONL from a folder of pictures; what datasets hold."

app = typer.Typer(
    name=NAME, help=SHORT_HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None
)


@app.command("init")
def init(
    folder: Annotated[
        Path, typer.Argument(help="The folder of pictures.", show_default=False, callback=options.home)
    ],
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="Take the one-frame layout from this spec (default: the house settings).",
            callback=options.home,
        ),
    ] = None,
    captions: Annotated[
        Path | None,
        typer.Option(
            "--captions",
            help="A CSV with columns image,caption (default: <stem>.txt beside each target).",
            callback=options.home,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the records; write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing metadata.jsonl.")] = False,
) -> None:
    """Write FOLDER/metadata.jsonl (paths relative to it) and FOLDER/fplora-dataset.yaml (the spec
    snippet) from targets and control images found by subfolders (targets/, control_0/, control_1/),
    by targets/ + controls/<stem>_<k>, or by <stem> + <stem>_<k> in one folder; captions from
    <stem>.txt beside each target or a CSV. Refuses missing or ambiguous pairs, naming the files, and
    prints which image goes to which latent index.

    Example: fplora dataset init datasets/turnaround --dry-run
    """
    from fplora.jobs import dataset_init

    with common.user_errors():
        layout = (
            dataset_init.house_layout()
            if spec is None
            else dataset_init.layout_of(common.load(spec, preset=False))
        )
        raise typer.Exit(
            dataset_init.init(
                folder,
                layout=layout,
                captions_csv=captions,
                dry_run=dry_run,
                force=force,
                say=lambda text: typer.echo(text, err=True),
                out=typer.echo,
            )
        )


@app.command("stats")
def stats(
    spec: SpecArg = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Also draw the sizes as a PNG histogram here (the plot extra).",
            callback=options.home,
        ),
    ] = None,
    gpu: Gpu = None,
) -> None:
    """Records per dataset, image sizes and aspect ratios against the buckets, caption lengths and
    duplicates, near-duplicate targets, records × repeats and the steps one epoch takes.

    Example: fplora dataset stats configs/v8.yaml --plot sizes.png
    """
    from fplora.jobs import dataset_stats

    with common.user_errors():
        raise typer.Exit(dataset_stats.stats(common.load(spec, gpu=gpu), plot=plot, say=typer.echo))
