"""`fplora check`: every problem of a spec and what it names, one per line, then a count line."""

from __future__ import annotations

import re
from collections.abc import Callable

from fplora.check import check_spec
from fplora.jobs import output
from fplora.problems import Problem, UserError, plural
from fplora.spec import RulesFailed
from fplora.spec.models import Spec

# rule errors after which checking the files would misread the spec or repeat the error once per
# record: which datasets there are, which one is held out, which dataset or controls a prompt uses
_STRUCTURAL = re.compile(r"^(?:datasets|eval)\b|\.(?:dataset|control_images)$")


def load_checked(load: Callable[[], Spec], *, skip_models: bool) -> Spec:
    """`load()`'s spec; when it breaks a cross-field rule, the refusal lists the problems of the
    files it names too (records, images, models), in file and line order, so that one check shows
    everything to fix, unless the broken rule makes those checks meaningless (`_STRUCTURAL`)."""
    try:
        return load()
    except RulesFailed as failed:
        raise UserError(_with_files(failed, skip_models=skip_models)) from None


def _with_files(failed: RulesFailed, *, skip_models: bool) -> list[Problem]:
    if any(p.severity == "error" and _STRUCTURAL.search(p.key) for p in failed.problems):
        return failed.problems
    files = [p for p in check_spec(failed.spec, skip_models=skip_models) if p not in failed.problems]
    return sorted([*failed.problems, *files], key=lambda p: (p.file, p.line or 0))


def run_check(spec: Spec, *, skip_models: bool) -> int:
    """Print the problems and the summary line; 1 when there is an error."""
    problems = check_spec(spec, skip_models=skip_models)
    output.learning_rate(spec)
    errors = [p for p in problems if p.severity == "error"]
    warnings = len(problems) - len(errors)
    output.problems(problems)
    where = output.shown(spec.path)
    if errors:
        output.line(f"{where}: {plural(len(errors), 'error')}, {plural(warnings, 'warning')}", err=True)
        return 1
    skipped = " (model files not checked)" if skip_models else ""
    output.line(
        f"{where}: ok, {plural(len(spec.datasets), 'dataset')}, {spec.effective_batch_text()},"
        f" {plural(warnings, 'warning')}{skipped}",
        err=True,
    )
    return 0
