"""What every command shares: finding the spec, loading it, turning user errors into one line each
and exit code 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from fplora.jobs.context import Job
    from fplora.jobs.load import Applied, Spec
    from fplora.problems import Problem

_loading: list[Path] = []  # the spec this command loads, for the summary line after its errors


def shown(path: Path) -> str:
    from fplora.jobs.output import shown as as_typed

    return as_typed(path)


@contextmanager
def user_errors(*, summary: bool = False) -> Iterator[None]:
    """Print a user's mistakes one per line on stderr and exit 1, without a traceback.

    `summary`: end with the spec's count line even for one error (`fplora check`, whose output is
    a report that always ends with one); other commands count only several errors."""
    from fplora.problems import UserError

    _loading.clear()
    try:
        yield
    except UserError as error:
        echo_problems(error.problems)
        line = _summary(error.problems, always=summary)
        if line:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def _summary(problems: list[Problem], *, always: bool) -> str:
    """The line after a command's errors, as `fplora check` ends: `configs/v1.yaml: 2 errors,
    1 warning`, whether they came from loading the spec or checking its files. Without `always`,
    only for several errors; without a spec (a command-line mistake), only their number."""
    from fplora.problems import plural

    errors = sum(p.severity == "error" for p in problems)
    warnings = sum(p.severity == "warning" for p in problems)
    if _loading and (errors > 1 or (always and errors)):
        return f"{shown(_loading[-1])}: {plural(errors, 'error')}, {plural(warnings, 'warning')}"
    return plural(errors, "error") if errors > 1 else ""


def echo_problems(problems: list[Problem]) -> None:
    """One line per problem on stderr, `error:` or `warning:` first."""
    from fplora.jobs import output

    output.problems(problems)


def fail(key: str, message: str) -> NoReturn:
    from fplora.problems import Problem, UserError

    raise UserError(Problem("command line", None, key, message))


def load(given: Path | None, *, gpu: str | None = None, preset: bool = True, all_notes: bool = False) -> Spec:
    """The spec named (or the project's default), with its GPU preset applied (`jobs.load`); what the
    preset chose is said by every command when `all_notes`, else when it changed (`presets.said`)."""
    return load_applied(given, gpu=gpu, preset=preset, all_notes=all_notes).spec


def load_applied(
    given: Path | None, *, gpu: str | None = None, preset: bool = True, all_notes: bool = False
) -> Applied:
    from fplora.jobs import load

    path = load.pick(given)
    _loading.append(path)  # for the count line, should loading it fail
    return load.applied(path, gpu=gpu, preset=preset, all_notes=all_notes)


def job(given: Path | None, *, dry_run: bool, gpu: str | None = None) -> Job:
    """The spec named (or remembered), checked and rendered, ready for a job (`jobs.context`). The
    job rehearses itself (`jobs.rehearse.gate`) once its own refusals are past, so that a wrong
    `--lora` or a spec without an evaluation split is said before half a minute of rehearsing."""
    from fplora.jobs.context import open_job

    return open_job(load(given, gpu=gpu), dry_run=dry_run)
