"""`fplora train`."""

from __future__ import annotations

from typing import Annotated

import typer

from fplora.cli import common
from fplora.cli.options import DryRun, Gpu, NoRehearse, SpecArg

NAME = "train"
SHORT_HELP = "Train the LoRA (accelerate launch fpack_train_network)."


def command(
    spec: SpecArg = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            help="Continue from a state: latest, stepN (global step) or a -state folder.",
            show_default=False,
        ),
    ] = None,
    with_cache: Annotated[bool, typer.Option("--cache", help="Run `fplora cache` first.")] = False,
    stop_pod: Annotated[
        str | None,
        typer.Option("--stop-pod", help="Stop this RunPod pod when training ends: success, always or never."),
    ] = None,
    dry_run: DryRun = False,
    no_rehearse: NoRehearse = False,
    gpu: Gpu = None,
    price_per_hour: Annotated[
        float | None,
        typer.Option(
            "--price-per-hour",
            metavar="<dollars>",
            min=0,
            help="What the GPU machine costs per hour, for --dry-run's estimate (default: the spec's"
            " price_per_hour).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train the LoRA with `accelerate launch -m musubi_tuner.fpack_train_network`.

    Example: fplora train configs/v8.yaml        then: fplora train --resume latest
    """
    from fplora.jobs import output
    from fplora.jobs.context import console, open_job
    from fplora.jobs.estimate import estimate
    from fplora.jobs.runpod import WHEN, stopping_pod
    from fplora.jobs.train import login_refused, run_train

    with common.user_errors():
        if stop_pod not in (None, *WHEN):
            common.fail("--stop-pod", "must be success, always or never")
    with stopping_pod(stop_pod, dry_run=dry_run, console=console()) as pod, common.user_errors():
        applied = common.load_applied(spec, gpu=gpu, all_notes=True)
        pod.follow(applied.spec)
        job = open_job(applied.spec, dry_run=dry_run, out=pod.console)
        if dry_run:
            output.learning_rate(applied.spec)
            for line in estimate(job.plan, applied.choice, price_per_hour=price_per_hour):
                job.say(line)
        pod.code = login_refused(job) or run_train(
            job, resume=resume, no_rehearse=no_rehearse, with_cache=with_cache
        )
        raise typer.Exit(pod.code)
