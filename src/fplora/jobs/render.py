"""`fplora render`: write a spec's musubi-tuner files, print their paths."""

from __future__ import annotations

from pathlib import Path

from fplora import plan
from fplora.jobs import output
from fplora.problems import Problem, UserError
from fplora.spec.models import Spec
from fplora.writable import folder_problem


def run_render(spec: Spec, *, out: Path | None = None, force: bool = False) -> int:
    """Render into `out` (default configs/<version>/); refuses to replace another spec's files
    unless `force`."""
    if out is not None and (found := folder_problem(out)) is not None:
        raise UserError(Problem("command line", None, "--out", *found))
    output.learning_rate(spec)
    built = plan.build(spec, out)
    plan.write(built, force=force)
    for path in built.files:
        output.line(output.shown(path))
    return 0
