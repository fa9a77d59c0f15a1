"""Which spec a command means when none is named: the project it runs in, the spec used last there,
else the only experiment under `configs/`.

A project is the nearest folder (the working directory or one above) holding `configs/`. The last
spec is remembered in its `.fplora/last-spec`, relative to the project, so that a project folder
moved (rsync to a pod) keeps its default; a command run outside any project remembers nothing (it
would otherwise leave `.fplora/` in whatever folder it ran in, `$HOME` included). Which specs are
bases is read with the spec loader (`extends:` as YAML reads it: a comment after it, a list, a
base in another folder), not by matching text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fplora.problems import Problem, UserError, display_path
from fplora.spec.load import experiments_in
from fplora.state import STATE_DIR

HISTORY = Path(STATE_DIR) / "last-spec"  # under the project root


def project_root(start: Path | None = None) -> Path | None:
    """The folder holding `configs/`: `start` (default: the working directory) or the nearest one
    above, so a command run from `configs/` or `datasets/` finds the same default; None outside."""
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        if (folder / "configs").is_dir():
            return folder
    return None


def experiments(root: Path) -> list[Path]:
    """Specs under `<root>/configs/` that no other spec there extends (a base is not an experiment)."""
    return experiments_in(root / "configs")


def last_spec(root: Path) -> Path | None:
    """The spec remembered in the project, when it is still there (relative to the project; an
    older absolute entry is read too)."""
    try:
        text = (root / HISTORY).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text:
        return None
    path = root / text
    return path if path.is_file() else None


def remember(spec: Path) -> None:
    """Make `spec` the project's default, when the command runs inside a project that holds it."""
    root = project_root()
    if root is None:
        return
    try:
        relative = Path(os.path.relpath(spec.resolve(), root.resolve()))
    except ValueError:  # another drive
        return
    if relative.parts[:1] == ("..",):
        return  # a spec of another project is not this one's default
    history = root / HISTORY
    try:
        history.parent.mkdir(exist_ok=True)
        history.write_text(f"{relative.as_posix()}\n", encoding="utf-8")
    except OSError:
        pass  # a read-only project folder only loses the default


@dataclass(frozen=True)
class Default:
    path: Path
    why: str  # what the command says about its choice


def default_spec() -> Default:
    """The spec a command without one uses, or a refusal that says how to name one."""
    root = project_root()
    if root is None:
        raise UserError(
            Problem(
                "command line",
                None,
                "SPEC",
                "no spec given, and this folder is not in an fplora project (no configs/ here or above)",
                "cd into the project folder, give the spec's path (e.g. my-project/configs/v1.yaml),"
                " or start a project: fplora init my-project",
            )
        )
    last = last_spec(root)
    if last is not None:
        return Default(last, "the spec of the last command")
    candidates = experiments(root)
    if len(candidates) == 1:
        return Default(candidates[0], "the only spec under configs/")
    if not candidates:
        message, fix = (
            "no spec given, and configs/ has none",
            "write one (fplora init writes a starter), or name one",
        )
    else:
        found = ", ".join(display_path(c) for c in candidates)
        message = f"no spec given and no last one; configs/ has {found}"
        fix = f"name one, e.g. {display_path(candidates[-1])}"
    raise UserError(Problem("command line", None, "SPEC", message, fix))
