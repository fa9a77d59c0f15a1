"""Pydantic's validation errors, said the way fplora says problems: where, what, what to do.

Locations lose Pydantic's union-branch labels, unknown keys get the nearest valid name (also one
level down: `train.learnig_rate` → `optimizer.learning_rate`), and messages read as sentences.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from fplora.problems import Problem
from fplora.spec.fields import field_kind, keys_of, section
from fplora.spec.load import KeyPath, Loaded
from fplora.spec.models import Spec
from fplora.spec.rules import closest


def _model_at(loc: KeyPath) -> type[BaseModel] | None:
    """The model class that holds the last key of a validation error's location."""
    model: type[BaseModel] | None = Spec
    for part in loc[:-1]:
        if not isinstance(part, int):
            model = section(model, part)
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
    names = keys_of(model)
    nested: dict[str, str] = {}  # key of a section inside → its dotted name
    for name in model.model_fields:
        kind, sub = field_kind(model, name)
        if kind == "model":
            nested.update({leaf: f"{name}.{leaf}" for leaf in keys_of(sub)})
    close = closest(key, names)
    if close is None and (leaf := closest(key, set(nested))) is not None:
        close = nested[leaf]
    return f"did you mean '{close}'?" if close else f"valid keys: {', '.join(sorted(names))}"


def validation_problems(error: ValidationError, loaded: Loaded) -> list[Problem]:
    """Pydantic's errors as located one-line problems: file, line, dotted key, message, fix."""
    problems = []
    for item in error.errors():
        loc = _real_loc(item["loc"], loaded.data)
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
        problems.append(loaded.problem(loc, message, fix))
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
        fields = (set(model.model_fields) | keys_of(model)) if model else set()
        if (isinstance(data, dict) and part in data) or part in fields:
            out.append(part)
            data = data.get(part) if isinstance(data, dict) else None
            model = section(model, part)
    return tuple(out)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            out.append(problem)
    return out
