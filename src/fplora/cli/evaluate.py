"""`fplora eval` (a module named for what it does: `eval` is Python's)."""

from __future__ import annotations

from typing import Annotated

import typer

from fplora.cli import common, options
from fplora.cli.options import DryRun, Gpu, NoRehearse, SpecArg

NAME = "eval"
SHORT_HELP = "Evaluation loss of each checkpoint on held-out records."


def command(
    spec: SpecArg = None,
    lora: Annotated[
        list[str] | None,
        options.lora(
            "Checkpoints to score: all, stepN, latest, final, a path, or stepA..stepB, every:N, last:K;"
            " repeat for several. [default: all]"
        ),
    ] = None,
    untrained: Annotated[
        bool,
        typer.Option("--untrained/--no-untrained", help="Also score the untrained network (the baseline)."),
    ] = True,
    redo: Annotated[bool, options.redo("Score again checkpoints already scored with this setup.")] = False,
    dry_run: DryRun = False,
    no_rehearse: NoRehearse = False,
    gpu: Gpu = None,
) -> None:
    """Score checkpoints by the training loss on the spec's evaluation split (`eval:` in the spec).

    One worker loads the DiT once and computes, for each checkpoint, musubi-tuner's one-frame
    flow-matching loss on the split's cached records at fixed noise levels with fixed noise, the
    same for every checkpoint. Scores are kept in <output_dir>/<output_name>.eval.json and printed
    as a table; the lowest is what `--lora best` means.

    Example: fplora eval configs/v8.yaml --lora step1000..step5000
    """
    from fplora.jobs.eval import ALL, run_eval

    with common.user_errors():
        job = common.job(spec, dry_run=dry_run, gpu=gpu)
        raise typer.Exit(
            run_eval(job, loras=lora or [ALL], no_rehearse=no_rehearse, untrained=untrained, redo=redo)
        )
