"""Preset notes said once: what the GPU preset chose is printed by `check` and `train` every time,
and by other commands (`infer`, `eval`, `cache`, ...) only when it differs from what the last command
said for that spec, so an infer does not repeat three lines about the training's batch split.

What was said is kept in the project's `.fplora/` (only inside a project, as the last spec is).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from fplora.atomic import write_atomic
from fplora.problems import Problem
from fplora.project import project_root
from fplora.state import STATE_DIR

SAID = Path(STATE_DIR) / "preset-notes.json"


def _digest(notes: list[Problem]) -> str:
    return hashlib.sha256("\n".join(str(n) for n in notes).encode("utf-8")).hexdigest()[:16]


def unsaid(spec_path: Path, notes: list[Problem], *, always: bool = False) -> list[Problem]:
    """`notes` to print: warnings always; the preset's notes unless the last command said the same
    for this spec (or `always`: `check` and `train`). Remembers what it lets through."""
    said = [n for n in notes if n.severity == "note"]
    others = [n for n in notes if n.severity != "note"]
    root = project_root()
    if root is None or not said:
        return notes
    store = root / SAID
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    key, digest = str(spec_path.resolve()), _digest(said)
    if known.get(key) == digest and not always:
        return others
    known[key] = digest
    with contextlib.suppress(OSError):  # a read-only project repeats its notes
        write_atomic(store, json.dumps(known, indent=1, sort_keys=True) + "\n")
    return notes
