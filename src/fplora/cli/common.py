"""What every command shares: finding the spec, loading it, printing problems, exit codes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from fplora.jobs.context import Job
    from fplora.plan import Plan
    from fplora.problems import Problem
    from fplora.spec.models import Spec

HISTORY = Path(".fplora") / "last-spec"  # under the project root
_EXTENDS = re.compile(r"^extends:\s*(.+?)\s*$", re.MULTILINE)


def shown(path: Path) -> str:
    from fplora.problems import display_path

    return display_path(path)


@contextmanager
def user_errors() -> Iterator[None]:
    """Print a user's mistakes one per line on stderr and exit 1, without a traceback."""
    from fplora.problems import UserError

    try:
        yield
    except UserError as error:
        errors = [p for p in error.problems if p.severity == "error"]
        echo_problems(error.problems)
        if len(errors) > 1:
            typer.echo(f"{len(errors)} errors", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def echo_problems(problems: list[Problem]) -> None:
    """One line per problem on stderr, `error:` or `warning:` first."""
    for problem in problems:
        typer.echo(f"{problem.severity}: {problem}", err=True)


def fail(key: str, message: str) -> NoReturn:
    from fplora.problems import Problem, UserError

    raise UserError(Problem("command line", None, key, message))


def project_root() -> Path:
    """The folder holding `configs/` (or fplora's `.fplora/`): here or the nearest one above, so a
    command run from `configs/` or `datasets/` finds the same default spec as from the project."""
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "configs").is_dir() or (folder / HISTORY).is_file():
            return folder
    return here


def _candidates(root: Path) -> list[Path]:
    """Specs under configs/ that no other spec extends (a base is not an experiment)."""
    specs = sorted((root / "configs").glob("*.y*ml"))
    bases = set()
    for spec in specs:
        for match in _EXTENDS.finditer(spec.read_text(encoding="utf-8", errors="replace")):
            for name in match.group(1).strip("[]").split(","):
                bases.add((spec.parent / name.strip().strip("'\"")).resolve())
    return [s for s in specs if s.resolve() not in bases]


def pick_spec(given: Path | None) -> Path:
    """The given spec, else the last one used in this project, else the only one under configs/."""
    from fplora.problems import Problem, UserError

    if given is not None:
        return given
    root = project_root()
    history = root / HISTORY
    if history.is_file():
        last = Path(history.read_text(encoding="utf-8").strip())
        if last.is_file():
            typer.echo(f"using {shown(last)} (the spec of the last command)", err=True)
            return last
    candidates = _candidates(root) if (root / "configs").is_dir() else []
    if len(candidates) == 1:
        typer.echo(f"using {shown(candidates[0])} (the only spec under configs/)", err=True)
        return candidates[0]
    found = ", ".join(shown(c) for c in candidates) or "none under configs/"
    raise UserError(
        Problem("command line", None, "SPEC", f"no spec given and no last one ({found})", "name one")
    )


def remember(path: Path) -> None:
    history = project_root() / HISTORY
    try:
        history.parent.mkdir(exist_ok=True)
        history.write_text(f"{path.resolve()}\n", encoding="utf-8")
    except OSError:
        pass  # a read-only project folder only loses the default


def load(given: Path | None) -> Spec:
    from fplora.spec import load_spec

    path = pick_spec(given)
    spec = load_spec(path)
    remember(path)
    return spec


def count(n: int, noun: str) -> str:
    """`1 error`, `2 errors`, `0 warnings`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def report_check(spec: Spec, *, skip_models: bool) -> int:
    from fplora.check import check_spec

    problems = check_spec(spec, skip_models=skip_models)
    errors = [p for p in problems if p.severity == "error"]
    warnings = len(problems) - len(errors)
    echo_problems(problems)
    if errors:
        typer.echo(
            f"{shown(spec.path)}: {count(len(errors), 'error')}, {count(warnings, 'warning')}", err=True
        )
        return 1
    skipped = " (model files not checked)" if skip_models else ""
    typer.echo(
        f"{shown(spec.path)}: ok, {len(spec.datasets)} dataset(s), {spec.effective_batch_text()},"
        f" {count(warnings, 'warning')}{skipped}",
        err=True,
    )
    return 0


def write_plan(spec: Spec, *, out: Path | None = None, force: bool = False) -> Plan:
    from fplora import plan

    built = plan.build(spec, out)
    plan.write(built, force=force)
    return built


def job(given: Path | None, *, dry_run: bool) -> Job:
    """The spec named (or remembered), checked and rendered, ready for a job (`jobs.context`)."""
    from fplora.jobs.context import open_job

    return open_job(load(given), dry_run=dry_run)
