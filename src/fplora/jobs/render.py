"""`fplora render`: write a spec's musubi-tuner files, print their paths."""

from __future__ import annotations

from pathlib import Path

from fplora import plan
from fplora.check import check_spec
from fplora.datasets.records import RecordCache
from fplora.jobs import output
from fplora.jobs.context import console, report
from fplora.problems import Problem, UserError
from fplora.spec.models import Spec
from fplora.writable import folder_problem


def run_render(spec: Spec, *, out: Path | None = None, force: bool = False) -> int:
    """Render into `out` (default configs/<version>/); refuses to replace another spec's files
    unless `force`. The spec is checked as `check --skip-models` does first: files for records that
    check refuses would only fail on the GPU, under fplora or under musubi-tuner run by hand."""
    if out is not None and (found := folder_problem(out)) is not None:
        raise UserError(Problem("command line", None, "--out", *found))
    records = RecordCache(spec)
    problems = check_spec(spec, skip_models=True, records=records)
    if any(problem.severity == "error" for problem in problems):
        raise UserError(problems)
    report(console(), problems)
    output.learning_rate(spec)
    built = plan.build(spec, out, records=records)
    plan.write(built, force=force)
    for path in built.files:
        output.line(output.shown(path))
    return 0
