"""Pydantic's validation errors, said the way fplora says problems: where, what, what to do.

Locations lose Pydantic's union-branch labels, unknown keys get the nearest valid name (also one
level down: `train.learnig_rate` → `optimizer.learning_rate`), and messages read as sentences.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from fplora.musubi.names import PASS_THROUGH_SCRIPT
from fplora.problems import Problem
from fplora.spec.fields import field_kind, keys_of, section
from fplora.spec.load import KeyPath, Loaded
from fplora.spec.models import Spec
from fplora.suggest import closest


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


def _what(value: Any) -> str:
    """What the user wrote instead of a mapping or list, in words."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else "something else"


def _shape(model: type[BaseModel]) -> tuple[str, str | None]:
    """A section's keys as an example mapping (`{jsonl: ...}`: its required keys, else its first two),
    and the key a lone value most likely belongs to (the one required key, else the first key)."""
    fields = model.model_fields
    required = [field.alias or name for name, field in fields.items() if field.is_required()]
    keys = required or [field.alias or name for name, field in list(fields.items())[:2]]
    example = "{" + ", ".join(f"{key}: ..." for key in keys) + "}"
    return example, (required[0] if len(required) == 1 else None if required else keys[0])


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _mapping_problem(loc: KeyPath, value: Any) -> tuple[str, str]:
    """(message, fix) for a section or list item that is not a mapping: which keys it takes, and,
    for a lone value, the line to write instead (`- jsonl: <the value>`)."""
    model = _model_at(loc)
    if loc and isinstance(loc[-1], str):
        model = section(model, loc[-1])
    if model is None:
        return f"should be a mapping, not {_what(value)}", "write a mapping"
    example, first = _shape(model)
    message = f"should be a mapping like {example}, not {_what(value)}"
    if first is not None and _is_scalar(value):
        line = f"- {first}: {value}" if isinstance(loc[-1], int) else f"{loc[-1]}: {{{first}: {value}}}"
        return message, f'write "{line}"'
    if value is None:  # a section's null resets it to its default (`spec._drop_nulls`) unless required
        return message, (
            "give it keys: it is required" if isinstance(loc[-1], str) else "give it keys, or remove it"
        )
    return message, f"write its keys under it: {', '.join(sorted(keys_of(model)))}"


def _list_problem(loc: KeyPath, value: Any) -> tuple[str, str] | None:
    """(message, fix) for a list of sections (`datasets`, `prompts`) written as one entry, the list
    dash forgotten; None for other lists."""
    parent = _model_at(loc)
    kind, model = field_kind(parent, str(loc[-1])) if parent is not None else ("other", None)
    if kind != "models" or model is None:
        return None
    example, first = _shape(model)
    message = f"should be a list of mappings like {example}, not {_what(value)}"
    if isinstance(value, dict) and value:
        key, item = next(iter(value.items()))
        return message, f'start each entry with "- ": "- {key}: {item}"'
    if first is not None and _is_scalar(value):
        return message, f'write "- {first}: {value}" on the next line'
    return message, "write one `- key: value` entry per item"


def _dict_problem(loc: KeyPath, value: Any) -> tuple[str, str]:
    """(message, fix) for a free-form mapping (pass-through options) given as something else."""
    script = PASS_THROUGH_SCRIPT.get(str(loc[-1])) if loc[:1] == ("musubi",) and len(loc) == 2 else None
    if loc == ("launch", "extra"):
        script = "accelerate launch"
    if script is None:
        return f"should be a mapping, not {_what(value)}", "write a mapping"
    return f"should be a mapping of {script} options, not {_what(value)}", "write `option: value` under it"


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
        elif item["type"] == "model_type" and loc:
            message, fix = _mapping_problem(loc, item.get("input"))
        elif item["type"] == "list_type" and loc and (found := _list_problem(loc, item.get("input"))):
            message, fix = found
        elif item["type"] == "dict_type" and loc:
            message, fix = _dict_problem(loc, item.get("input"))
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
