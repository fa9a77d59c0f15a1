"""How the short verbs print: problems one per line on stderr, paths as the user typed them.

Plain lines (no rich markup), so a check's report reads the same in a terminal, a log and a test.
Jobs that run musubi-tuner print through `jobs.context.Job` instead (progress bars, colour).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from fplora.problems import Problem, display_path
from fplora.spec.models import Spec


def shown(path: Path) -> str:
    """A path as the user would type it: relative to here when below it."""
    return display_path(path)


def line(text: str, *, err: bool = False) -> None:
    """One line on stdout (what a command answers) or stderr (what it notes)."""
    out = sys.stderr if err else sys.stdout
    out.write(f"{text}\n")
    out.flush()


def problems(found: Iterable[Problem]) -> None:
    """One line per problem on stderr, `error:` or `warning:` first."""
    for problem in found:
        line(f"{problem.severity}: {problem}", err=True)


def learning_rate(spec: Spec) -> None:
    """The learning rate's derivation, when the spec asks for one (`tuned_at_batch`)."""
    from fplora.spec.learning_rate import derive

    derived = derive(spec)
    if derived.tuned_at is not None:
        line(derived.text(), err=True)
