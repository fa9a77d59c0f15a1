"""What every job starts from: a checked spec, its written `Plan`, the musubi-tuner Python and a
console, and the one way a job prints commands and notes.

With `dry_run` a job prints each command it would run, shell-quoted, one per line on stdout, and
runs nothing; notes and progress go to stderr.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from fplora import plan
from fplora.check import check_spec
from fplora.datasets.records import RecordCache
from fplora.plan import Plan
from fplora.problems import Problem, UserError, display_path
from fplora.runs.catalogue import Catalogue
from fplora.runtime import ensure_musubi, needed_modules, python_for
from fplora.spec.models import Spec

_STYLE = {"error": "red", "warning": "yellow", "note": "yellow"}


@dataclass
class Job:
    plan: Plan
    python: str
    console: Console  # stderr: progress and messages; stdout stays for dry-run commands
    dry_run: bool = False
    catalogue: Catalogue | None = None  # read when first needed; `open_job` passes check's

    @property
    def run(self) -> Catalogue:
        """The spec's run folder, read once for this command (segments, checkpoints, scores, lock)."""
        if self.catalogue is None:
            self.catalogue = Catalogue.of(self.plan.spec)
        return self.catalogue

    def show(self, argv: Sequence[str]) -> None:
        """Print a command: on stdout alone for --dry-run, as a note on stderr otherwise."""
        line = shlex.join(str(a) for a in argv)
        if self.dry_run:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        else:
            self.console.print(f"[bold]$[/] {escape(line)}", markup=True, highlight=False, soft_wrap=True)

    def report(self, problems: Iterable[Problem]) -> None:
        """Print what a decision noted, one line each (`note: …`, `warning: …`)."""
        report(self.console, problems)

    def say(self, text: str, style: str = "") -> None:
        """A line of progress or outcome on stderr (markup-free: paths may hold brackets)."""
        self.console.print(f"[{style}]{escape(text)}[/]" if style else escape(text), highlight=False)


def report(out: Console, problems: Iterable[Problem]) -> None:
    """Problems one per line, `severity: file:line: key: what — fix`, coloured by severity."""
    for problem in problems:
        style = _STYLE.get(problem.severity, "")
        out.print(f"[{style}]{escape(f'{problem.severity}: {problem}')}[/]", highlight=False)


def console() -> Console:
    # soft_wrap: never break a message into lines; piped to a log, rich would wrap at 80 columns
    # and split paths and commands where grep and copy-paste cannot find them
    return Console(stderr=True, highlight=False, soft_wrap=True)


def open_job(
    spec: Spec, *, dry_run: bool, out: Console | None = None, records: RecordCache | None = None
) -> Job:
    """Check the spec (model files too unless dry-run), render its files, find musubi-tuner (unless
    dry-run): everything that can refuse a job before it starts. Warnings are printed here. `records`:
    those the command read already (`fplora cache` asked first whether there is anything to do)."""
    shown = out or console()
    records = records or RecordCache(spec)
    run = Catalogue.of(spec)  # the run's folder, read once: by check, then by the job's decisions
    problems = check_spec(spec, skip_models=dry_run, records=records, run=run)
    if any(p.severity == "error" for p in problems):
        raise UserError(problems)
    report(shown, problems)  # warnings
    job = Job(plan.build(spec, records=records), python_for(spec), shown, dry_run=dry_run, catalogue=run)
    fix = (
        f"move them away, or overwrite them with this spec's: fplora render {display_path(spec.path)} --force"
    )
    plan.write(job.plan, fix=fix, again=f"run `fplora render {display_path(spec.path)} --force`")
    if not dry_run:
        ensure_musubi(job.python, needed_modules(spec))
    else:
        sys.stderr.write("dry run: model files and musubi-tuner not checked; nothing will run\n")
    return job


@contextmanager
def worker_progress(job: Job, description: str, total: int) -> Iterator[tuple[Progress, TaskID]]:
    """The progress bar of a worker's steps (sweep cells, evaluated checkpoints), drawn while its
    output goes to the log: a spinner, what it is doing, and done out of `total`."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=job.console, transient=True) as progress:
        yield progress, progress.add_task(description, total=total)


def timestamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def log_path(folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stem}-{timestamp()}.log"


LOG_TAIL = 8  # lines of a worker's log shown when it fails without saying why


def log_tail(log: Path, count: int = LOG_TAIL) -> list[str]:
    """The last `count` non-blank lines of a log, or none if it cannot be read."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip()][-count:]
