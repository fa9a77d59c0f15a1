"""`fplora infer`."""

from __future__ import annotations

from typing import Annotated

import typer

from fplora.cli import common, options
from fplora.cli.options import DryRun, Gpu, NoRehearse, SpecArg

NAME = "infer"
SHORT_HELP = "Batch one-frame inference with trained LoRAs."


def command(
    spec: SpecArg = None,
    lora: Annotated[
        list[str] | None,
        options.lora(
            "Checkpoint: stepN (global step), latest, final or a file path, or a selection of step"
            " checkpoints: stepA..stepB, every:N, last:K (combine with commas); repeat to compare several."
            " [default: latest]"
        ),
    ] = None,
    multiplier: Annotated[
        list[str] | None,
        typer.Option(
            "--multiplier",
            metavar="<float>",
            help="LoRA multiplier; repeat, or separate with commas, for several (default:"
            " infer.multipliers).",
        ),
    ] = None,
    sweep: Annotated[
        bool | None,
        typer.Option(
            "--sweep/--no-sweep",
            help="One worker process that loads the models once for every cell (default when there are"
            " 2 or more cells), or one generate process per cell.",
            show_default=False,
        ),
    ] = None,
    redo: Annotated[
        bool, options.redo("Sweep: make cells again that are already made with these settings.")
    ] = False,
    strict_captions: Annotated[
        bool,
        typer.Option("--strict-captions", help="A written-out prompt near a training caption is an error."),
    ] = False,
    dry_run: DryRun = False,
    no_rehearse: NoRehearse = False,
    gpu: Gpu = None,
) -> None:
    """Batch one-frame inference with a trained LoRA; outputs go to sample/<version>-stepNNNNNNNN-lm<mult>.

    Each folder holds one LoRA's files: fplora-infer.json records the LoRA and every run into it, and
    a run with another LoRA file is refused. Several cells (checkpoints × multipliers) run in one
    sweep worker that loads the models once, skip cells already made, and end with contact sheets.

    Example: fplora infer --lora step5000 --multiplier 1.2

    Compare: fplora infer --lora step3000..step5000 --lora last:2 --multiplier 1.0 --multiplier 1.2
    (selections: stepA..stepB, every:N, last:K, combined with commas)
    """
    from fplora.jobs.infer import command_line, multipliers_to_run, run_infer

    with common.user_errors():
        job = common.job(spec, dry_run=dry_run, gpu=gpu)
        key = "--multiplier" if multiplier else "infer.multipliers"
        code = run_infer(
            job,
            loras=lora or ["latest"],
            multipliers=multipliers_to_run(multiplier or job.plan.spec.infer.multipliers, key),
            command=command_line(job.plan.spec.path, lora or [], multiplier or []),
            sweep=sweep,
            no_rehearse=no_rehearse,
            redo=redo,
            strict_captions=strict_captions,
        )
        raise typer.Exit(code)
