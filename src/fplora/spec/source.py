"""Where each value of a spec came from: key paths, their file and line, and the loaded spec that
carries them.

Why a module of its own: every later stage reports at the line the user wrote, so these types are
read across `spec/` (validation errors, the rules, the credential check, `${VAR}` expansion) and by
`check/` and `jobs/`, while only `spec.read` reads YAML. Kept apart, the modules that report a
location need not import the loader, and the loader can use `${VAR}` expansion, which asks the
credential check, without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fplora.problems import Problem, display_path

KeyPath = tuple[str | int, ...]
"""A value's place in the spec: `('datasets', 0, 'jsonl')`."""


@dataclass(frozen=True)
class Source:
    """The file and line that wrote a value (None for the line when only the file is known)."""

    file: Path
    line: int | None

    @property
    def shown(self) -> str:
        """`configs/base.yaml:40` (the file alone when the line is not known), as messages name it."""
        where = display_path(self.file)
        return f"{where}:{self.line}" if self.line else where


@dataclass
class Loaded:
    """A spec after loading and merging, before validation."""

    path: Path
    data: dict[str, Any]
    sources: dict[KeyPath, Source] = field(default_factory=dict)
    chain: list[Path] = field(default_factory=list)  # the spec, then each file it extends
    substitutions: dict[KeyPath, list[str]] = field(default_factory=dict)  # `${VAR}`s, as notes
    warnings: list[Problem] = field(default_factory=list)  # what loading found odd but allowed
    # keys a spec set to null over a value a file it extends wrote: key path → (that value, its source)
    nulled: dict[KeyPath, tuple[Any, Source]] = field(default_factory=dict)
    # settings a GPU preset chooses that a spec gave back with null ("let fplora choose"): where
    unpinned: dict[KeyPath, Source] = field(default_factory=dict)

    def note(self, key_path: KeyPath) -> str:
        """Where the value at `key_path` (or in a list under it) came from, when `${VAR}` made it:
        ` (from ${STEPS} = 'abc')`, so that an error names the variable rather than just the value."""
        notes = [
            text
            for path, texts in self.substitutions.items()
            if path[: len(key_path)] == tuple(key_path)
            and all(isinstance(part, int) for part in path[len(key_path) :])
            for text in texts
        ]
        return f" (from {', '.join(notes)})" if notes else ""

    def where(self, key_path: KeyPath) -> Source:
        """The source of the deepest known prefix of `key_path` (a missing key points at its parent)."""
        for end in range(len(key_path), -1, -1):
            source = self.sources.get(tuple(key_path[:end]))
            if source is not None:
                return source
        return Source(self.path, None)

    def problem(self, key_path: KeyPath, message: str, fix: str = "", severity: str = "error") -> Problem:
        """A problem at `key_path`, located at the line (in whichever file) that wrote it."""
        source = self.where(key_path)
        message += self.note(key_path)
        return Problem(display_path(source.file), source.line, dotted(key_path), message, fix, severity)


def dotted(key_path: KeyPath) -> str:
    """`('datasets', 0, 'jsonl')` → `datasets[0].jsonl`."""
    text = ""
    for part in key_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
