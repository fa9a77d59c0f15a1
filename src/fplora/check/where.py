"""Where in the spec a key was written, for problems about the spec itself (models, prompts).

A validated `Spec` no longer knows its YAML lines, so the first problem that needs one loads the spec
file again (with its `extends:` chain) for the source map. That costs a YAML parse only when something is
wrong; a spec that was not loaded from a file, or no longer loads, falls back to the spec's path and no line.
"""

from __future__ import annotations

from fplora.problems import Problem, UserError, display_path
from fplora.spec.load import KeyPath, Loaded, dotted, load
from fplora.spec.models import Spec


class SpecLocator:
    """Builds `Problem`s located at a key of the spec, looking lines up lazily."""

    def __init__(self, spec: Spec) -> None:
        self._spec = spec
        self._loaded: Loaded | None = None
        self._tried = False

    def _load(self) -> Loaded | None:
        if not self._tried:
            self._tried = True
            if not self._spec.path.is_absolute():
                return None  # not from `load_spec` (which keeps the absolute path): no file to read
            try:
                self._loaded = load(self._spec.path)
            except (UserError, OSError, ValueError):
                self._loaded = None
        return self._loaded

    def problem(self, key_path: KeyPath, message: str, fix: str = "", severity: str = "error") -> Problem:
        """A problem at `key_path` (e.g. `("sample", "prompts", 0, "record")`), with the line that set it."""
        loaded = self._load()
        if loaded is None:
            file, line = display_path(self._spec.path), None
        else:
            source = loaded.where(key_path)
            file, line = display_path(source.file), source.line
        return Problem(file, line, dotted(key_path), message, fix, severity)
