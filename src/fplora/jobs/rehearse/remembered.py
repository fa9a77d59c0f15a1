"""A passed rehearsal, remembered in the project's `.fplora/rehearsed/` with its fingerprint, so
that `train`, `cache`, `infer` and `eval` rehearse again only when what they render changed."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path

from fplora import __version__
from fplora.atomic import write_atomic
from fplora.jobs.rehearse.stages import Rehearsal
from fplora.musubi import schema
from fplora.spec.models import Spec
from fplora.state import project_state


def stamp_path(spec: Spec) -> Path:
    key = hashlib.sha256(str(spec.path.resolve()).encode()).hexdigest()[:12]
    return project_state(spec.path) / "rehearsed" / f"{spec.path.stem}-{key}.json"


def passed_before(rehearsal: Rehearsal) -> str | None:
    """When this exact rehearsal last passed, or None."""
    try:
        data = json.loads(stamp_path(rehearsal.spec).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != rehearsal.fingerprint:
        return None
    if data.get("not_rehearsed") and data.get("host") != socket.gethostname():
        return None  # a pass with stages this machine could not run: another machine may run them
    return str(data.get("passed", "?"))


def remember_pass(rehearsal: Rehearsal, seconds: float, not_rehearsed: list[str]) -> None:
    """A pass, with the stages this machine could not run (`not_rehearsed`): such a partial pass
    holds only on the host that made it, so the same project on the GPU box rehearses again there."""
    data = {
        "spec": str(rehearsal.spec.path),
        "fingerprint": rehearsal.fingerprint,
        "host": socket.gethostname(),
        "not_rehearsed": not_rehearsed,
        "passed": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(seconds, 1),
        "fplora": __version__,
        "musubi_tuner": schema.pinned_commit(),
    }
    write_atomic(stamp_path(rehearsal.spec), json.dumps(data, indent=1) + "\n")
