"""`fplora check`: every problem of a spec and what it names, one per line, then a count line."""

from __future__ import annotations

from fplora.check import check_spec
from fplora.jobs import output
from fplora.problems import plural
from fplora.spec.models import Spec


def run_check(spec: Spec, *, skip_models: bool) -> int:
    """Print the problems and the summary line; 1 when there is an error."""
    problems = check_spec(spec, skip_models=skip_models)
    output.learning_rate(spec)
    errors = [p for p in problems if p.severity == "error"]
    warnings = len(problems) - len(errors)
    output.problems(problems)
    where = output.shown(spec.path)
    if errors:
        output.line(
            f"{where}: {output.count(len(errors), 'error')}, {output.count(warnings, 'warning')}", err=True
        )
        return 1
    skipped = " (model files not checked)" if skip_models else ""
    output.line(
        f"{where}: ok, {plural(len(spec.datasets), 'dataset')}, {spec.effective_batch_text()},"
        f" {output.count(warnings, 'warning')}{skipped}",
        err=True,
    )
    return 0
