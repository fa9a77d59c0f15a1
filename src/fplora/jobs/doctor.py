"""`fplora doctor`: print one line per finding (ok / warn / fail, with the fix), exit 1 on a fail."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from fplora.datasets.records import RecordCache
from fplora.doctor import Finding, diagnose
from fplora.spec.models import Spec

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def run_doctor(spec: Spec | None, python: str, out: Console) -> int:
    """Diagnose this machine for `spec` (or without one) and print the findings on `out`."""
    findings: list[Finding] = diagnose(spec, python, RecordCache(spec) if spec is not None else None)
    for finding in findings:
        out.print(f"[{_STYLE[finding.status]}]{escape(str(finding))}[/]", highlight=False)
    fails = sum(f.status == "fail" for f in findings)
    warns = sum(f.status == "warn" for f in findings)
    about = "no spec" if spec is None else str(spec.path.name)
    out.print(
        f"doctor ({about}): {fails} fail, {warns} warn, {len(findings) - fails - warns} ok", highlight=False
    )
    return 1 if fails else 0
