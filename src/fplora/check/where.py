"""Where in the spec a key was written, for problems about the spec itself (models, prompts).

`load_spec` keeps the loader's source map on the spec; a spec built in code has none, and its
problems then name the spec's path without a line.
"""

from __future__ import annotations

from fplora.problems import Problem, display_path
from fplora.spec.load import KeyPath, Loaded, dotted
from fplora.spec.models import Spec


class SpecLocator:
    """Builds `Problem`s located at a key of the spec, looking lines up lazily."""

    def __init__(self, spec: Spec) -> None:
        self._spec = spec
        self._loaded: Loaded | None = spec.sources

    def problem(self, key_path: KeyPath, message: str, fix: str = "", severity: str = "error") -> Problem:
        """A problem at `key_path` (e.g. `("sample", "prompts", 0, "record")`), with the line that set it."""
        loaded = self._loaded
        if loaded is None:
            file, line = display_path(self._spec.path), None
        else:
            source = loaded.where(key_path)
            file, line = display_path(source.file), source.line
        return Problem(file, line, dotted(key_path), message, fix, severity)
