"""Load a spec file into a validated `Spec`, or fail with one located problem per mistake."""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fplora.problems import Problem, UserError, display_path
from fplora.spec.load import KeyPath, Loaded, dotted, load
from fplora.spec.models import Spec
from fplora.spec.rules import check_rules, did_you_mean

__all__ = ["Spec", "load_spec"]


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _field_kind(model: type[BaseModel], name: str) -> tuple[str, Any]:
    """('path'|'paths'|'model'|'models'|'other', model class) for a field of `model`."""
    field = model.model_fields.get(name)
    if field is None:
        return "other", None
    for kind in _unwrap(field.annotation):
        if kind is Path:
            return "path", None
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return "model", kind
        if typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            if item is Path:
                return "paths", None
            if isinstance(item, type) and issubclass(item, BaseModel):
                return "models", item
    return "other", None


def _field_name(model: type[BaseModel], key: str) -> str:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return name
    return key


def _resolve(value: Any, base: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value
    return os.path.normpath(base / os.path.expanduser(value))


def _resolve_paths(data: dict[str, Any], model: type[BaseModel], loaded: Loaded, path: KeyPath) -> None:
    """Make every relative path absolute against the file that wrote it (or `models.dir`)."""
    anchor: Path | None = None
    if model.__name__ == "Models" and isinstance(data.get("dir"), str):
        anchor = Path(_resolve(data["dir"], loaded.where((*path, "dir")).file.parent))
    for key, value in data.items():
        kind, sub = _field_kind(model, _field_name(model, key))
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


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that holds the last key of a validation error's location."""
    model: type[BaseModel] | None = Spec
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        kind, sub = _field_kind(model, _field_name(model, part))
        model = sub if kind in ("model", "models") else None
    return model


_FIX = {
    "missing": "add it",
    "extra_forbidden": "remove it",
    "greater_than": "use a positive number",
    "greater_than_equal": "use a larger number",
    "int_parsing": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "bool_parsing": "write true or false",
    "string_type": "write text",
    "list_type": "write a list",
    "dict_type": "write a mapping",
    "too_short": "add entries",
    "literal_error": "",
    "string_pattern_mismatch": "use letters, digits, '-', '_' or '.', no spaces or slashes",
}


def _unknown_key_hint(model: type[BaseModel], key: str) -> str:
    """Suggest a close key of this section, or of a section inside it (`optimizer.learning_rate`)."""
    names = {f.alias or n for n, f in model.model_fields.items()}
    nested = set()
    for name in model.model_fields:
        kind, sub = _field_kind(model, name)
        if kind == "model":
            nested |= {f"{name}.{f.alias or n}" for n, f in sub.model_fields.items()}
    hint = did_you_mean(key, names)
    if hint:
        return hint
    by_leaf = {n.rsplit(".", 1)[1]: n for n in nested}
    close = did_you_mean(key, set(by_leaf))
    if close:
        return f"did you mean '{by_leaf[close.split(chr(39))[1]]}'?"
    return f"valid keys: {', '.join(sorted(names))}"


def _problems(error: ValidationError, loaded: Loaded) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = _real_loc(item["loc"], loaded.data)
        source = loaded.where(loc)
        message = item["msg"].removeprefix("Value error, ").replace("Input should be", "should be")
        fix = _FIX.get(item["type"], "")
        if item["type"] == "extra_forbidden":
            model = _model_at(loc)
            message = "unknown key"
            if model is not None:
                fix = _unknown_key_hint(model, str(loc[-1]))
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "string_pattern_mismatch":
            message = "must be one word"
        elif " — " in message:
            message, fix = message.split(" — ", 1)
        problems.append(Problem(display_path(source.file), source.line, dotted(loc), message, fix))
    return _dedupe(problems)


def _real_loc(loc: tuple[Any, ...], data: Any) -> KeyPath:
    """Drop the union-branch labels Pydantic puts into locations (`int`, `tuple[int, int]`, ...)."""
    out: list[Any] = []
    model: type[BaseModel] | None = Spec
    for part in loc:
        if isinstance(part, int):
            out.append(part)
            data = data[part] if isinstance(data, list) and part < len(data) else None
            continue
        fields = set(model.model_fields) | {f.alias for f in model.model_fields.values()} if model else set()
        if (isinstance(data, dict) and part in data) or part in fields:
            out.append(part)
            data = data.get(part) if isinstance(data, dict) else None
            if model is not None:
                kind, sub = _field_kind(model, _field_name(model, part))
                model = sub if kind in ("model", "models") else None
    return tuple(out)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            out.append(problem)
    return out


def load_spec(path: str | Path) -> Spec:
    """Load, merge, resolve and validate a spec; raise `UserError` listing every problem."""
    loaded = load(Path(path))
    data = loaded.data
    data.setdefault("version", loaded.path.stem)
    _resolve_paths(data, Spec, loaded, ())
    try:
        spec = Spec.model_validate(data)
    except ValidationError as error:
        raise UserError(_problems(error, loaded)) from None
    spec._path = loaded.path
    spec._sources = loaded
    findings = check_rules(spec)
    if findings:
        raise UserError([loaded.problem(f.key_path, f.message, f.fix) for f in findings])
    return spec
