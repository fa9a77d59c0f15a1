"""Shared pieces of the three jobs (cache, train, infer): the context they run in and how
they report commands.

A job gets a written `Plan`, the musubi-tuner Python and a console; with `dry_run` it prints each
command it would run, shell-quoted, one per line on stdout, and runs nothing.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console

from fplora.plan import Plan


@dataclass
class Job:
    plan: Plan
    python: str
    console: Console  # stderr: progress and messages; stdout stays for dry-run commands
    dry_run: bool = False

    def show(self, argv: Sequence[str]) -> None:
        """Print a command: on stdout alone for --dry-run, as a note on stderr otherwise."""
        line = shlex.join(str(a) for a in argv)
        if self.dry_run:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        else:
            self.console.print(f"[bold]$[/] {line}", markup=True, highlight=False, soft_wrap=True)


def timestamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def log_path(folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stem}-{timestamp()}.log"
