"""The spec a command runs with: the one named, else the project's default (`fplora.project`, said
on stderr), loaded and remembered, with its GPU preset applied (`--gpu` wins over `gpu:`) and what
the preset chose said on stderr."""

from __future__ import annotations

from pathlib import Path

from fplora.jobs import output
from fplora.presets import Applied, apply
from fplora.presets.said import unsaid
from fplora.project import default_spec, remember
from fplora.runtime import python_for
from fplora.spec import load_spec
from fplora.spec.models import Spec

__all__ = ["Applied", "Spec", "applied", "pick"]


def pick(given: Path | None) -> Path:
    """The given spec, else the project's default, said on stderr."""
    if given is not None:
        return given
    default = default_spec()
    output.line(f"using {output.shown(default.path)} ({default.why})", err=True)
    return default.path


def applied(path: Path, *, gpu: str | None = None, preset: bool = True, all_notes: bool = False) -> Applied:
    """The spec at `path`, remembered as the project's last, with its preset (unless `preset` is
    off: `runs` and `plot` read what was trained, whatever the GPU). What the preset chose is said
    by every command when `all_notes` (check, train), else only when it changed since the last
    command said it (`presets.said`), so infer does not repeat the same three notes every time."""
    spec = load_spec(path)
    remember(path)
    if not preset:
        return Applied(spec)
    chosen = apply(spec, gpu, python_for(spec))
    output.problems(unsaid(path, chosen.notes, always=all_notes))
    return chosen
