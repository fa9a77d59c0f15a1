"""`fplora export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fplora.cli import common, options
from fplora.cli.options import SpecArg

NAME = "export"
SHORT_HELP = "The LoRA in the front ends' layouts, with a model card."


def command(
    spec: SpecArg = None,
    lora: Annotated[
        str,
        options.lora(
            "Checkpoint: stepN (global step), best (lowest evaluation loss), latest, final or a file."
        ),
    ] = "latest",
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to",
            metavar="<layout>",
            help="musubi (musubi-tuner's keys, alpha kept: eichi, kijai's ComfyUI wrapper) or diffusers"
            " (PEFT keys, alpha folded: FramePack-Studio, neph1/FramePack); repeat for both. [default: both]",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder to write into (default: <output_dir>/export/<name>/).",
            show_default=False,
            callback=options.home,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace files an earlier export wrote.")] = False,
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype",
            metavar="<dtype>",
            help="The diffusers layout's dtype: bf16, fp16 or float32. Default: the LoRA's own when alpha"
            " folds into it exactly, else float32.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write one checkpoint as the FramePack front ends load it, its metadata completed with the
    one-frame settings, resolution, base model, step and the spec's hash, and a model card
    (README.md) beside it: settings, example prompts, contact sheets, evaluation loss, how to load.

    Example: fplora export configs/v8.yaml --lora best --to diffusers
    """
    from fplora.jobs.export import DTYPES, LAYOUTS, export

    with common.user_errors():
        layouts = list(dict.fromkeys(to or LAYOUTS))
        for layout in layouts:
            if layout not in LAYOUTS:
                common.fail(
                    "--to",
                    f"{layout} is not a layout — use musubi (musubi-tuner, FramePack-eichi, ComfyUI's"
                    " FramePackWrapper) or diffusers (FramePack-Studio, neph1/FramePack)",
                )
        if dtype is not None and dtype not in DTYPES:
            common.fail("--dtype", f"{dtype} is not a dtype — use {', '.join(DTYPES)}")
        loaded = common.load(spec, preset=False)
        result = export(loaded, lora, layouts, out, force=force, dtype=DTYPES[dtype] if dtype else None)
        common.echo_problems(result.notes)
        for path in result.files:
            typer.echo(common.shown(path))
