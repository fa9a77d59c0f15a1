"""Load a spec file into a validated `Spec`, or fail with one located problem per mistake."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fplora.problems import UserError
from fplora.spec.errors import validation_problems
from fplora.spec.fields import field_kind
from fplora.spec.load import KeyPath, Loaded, load
from fplora.spec.models import Models, Spec
from fplora.spec.rules import check_rules

__all__ = ["Spec", "load_spec"]


def _resolve(value: Any, base: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value
    return os.path.normpath(base / os.path.expanduser(value))


def _resolve_paths(data: dict[str, Any], model: type[BaseModel], loaded: Loaded, path: KeyPath) -> None:
    """Make every relative path absolute against the file that wrote it (or `models.dir`)."""
    anchor: Path | None = None
    if model is Models and isinstance(data.get("dir"), str):
        anchor = Path(_resolve(data["dir"], loaded.where((*path, "dir")).file.parent))
    for key, value in data.items():
        kind, sub = field_kind(model, key)
        here = (*path, key)
        base = anchor if anchor is not None and key != "dir" else loaded.where(here).file.parent
        if kind == "path":
            data[key] = _resolve(value, base)
        elif kind == "paths" and isinstance(value, list):
            data[key] = [_resolve(v, loaded.where((*here, i)).file.parent) for i, v in enumerate(value)]
        elif kind == "model" and isinstance(value, dict):
            _resolve_paths(value, sub, loaded, here)
        elif kind == "models" and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _resolve_paths(item, sub, loaded, (*here, i))


def load_spec(path: str | Path) -> Spec:
    """Load, merge, resolve and validate a spec; raise `UserError` listing every problem."""
    loaded = load(Path(path))
    data = loaded.data
    data.setdefault("version", loaded.path.stem)
    _resolve_paths(data, Spec, loaded, ())
    try:
        spec = Spec.model_validate(data)
    except ValidationError as error:
        raise UserError(validation_problems(error, loaded)) from None
    spec._path = loaded.path
    spec._sources = loaded
    findings = check_rules(spec)
    if findings:
        raise UserError([loaded.problem(f.key_path, f.message, f.fix) for f in findings])
    return spec
