"""`fplora doctor`."""

from __future__ import annotations

import typer

from fplora.cli import common
from fplora.cli.options import SpecArg

NAME = "doctor"
SHORT_HELP = "Check this machine before paid GPU time."


def command(spec: SpecArg = None) -> None:
    """What would fail on this machine before the first paid minute: versions, musubi-tuner's options
    against fplora's schema, torch, CUDA and the GPU, accelerate's default config, the tokenizers in the
    Hugging Face cache, attention kernels, the wandb login and free disk. Exit 1 on a fail.

    Example: fplora doctor configs/v8.yaml
    """
    from fplora.jobs.doctor import run_doctor
    from fplora.problems import UserError

    with common.user_errors():
        loaded = None
        try:
            loaded = common.load(spec)  # with its GPU preset: the settings that will run
        except UserError:
            if spec is not None:
                raise  # a spec named but broken is the user's to fix; no spec at all is fine
        raise typer.Exit(run_doctor(loaded))
