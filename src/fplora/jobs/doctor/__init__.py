"""`fplora doctor`: print one line per finding (ok / warn / fail, with the fix), exit 1 on a fail.

The checks themselves live in `machine.py` (with the probe the musubi-tuner Python runs); this
module only prints them.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from fplora.datasets.records import RecordCache
from fplora.jobs.doctor.machine import STATUS, diagnose
from fplora.problems import Problem
from fplora.runtime import python_for
from fplora.spec.models import Spec

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def run_doctor(spec: Spec | None, python: str | None = None, out: Console | None = None) -> int:
    """Diagnose this machine for `spec` (or without one) and print the findings on `out` (stdout)."""
    python = python or python_for(spec)
    out = out or Console(highlight=False, soft_wrap=True)
    findings: list[Problem] = diagnose(spec, python, RecordCache(spec) if spec is not None else None)
    for finding in findings:
        status = STATUS[finding.severity]
        out.print(f"[{_STYLE[status]}]{escape(f'{status:<4}  {finding}')}[/]", highlight=False)
    fails = sum(finding.severity == "error" for finding in findings)
    warns = sum(finding.severity == "warning" for finding in findings)
    about = "no spec" if spec is None else str(spec.path.name)
    out.print(
        f"doctor ({about}): {fails} fail, {warns} warn, {len(findings) - fails - warns} ok", highlight=False
    )
    return 1 if fails else 0
