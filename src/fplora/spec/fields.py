"""Walking the spec's model classes by key: which fields are paths, which are sections.

Path resolution and error messages both need to follow a key path (`train.optimizer.lr`) through
the Pydantic classes without an instance; this is that walk, in one place.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel


def unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in unwrap(arg)]
    return [annotation]


def _field_name(model: type[BaseModel], key: str) -> str:
    """The field a YAML key sets (keys may be aliases, like `with` for `log_with`)."""
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return name
    return key


def keys_of(model: type[BaseModel]) -> set[str]:
    """The keys a section accepts, as written in YAML."""
    return {field.alias or name for name, field in model.model_fields.items()}


def field_kind(model: type[BaseModel], key: str) -> tuple[str, Any]:
    """('path'|'paths'|'model'|'models'|'other', model class) for the field `key` sets."""
    field = model.model_fields.get(_field_name(model, key))
    if field is None:
        return "other", None
    for kind in unwrap(field.annotation):
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


def section(model: type[BaseModel] | None, key: str) -> type[BaseModel] | None:
    """The model class of the section (or list of sections) under `key`, or None."""
    if model is None:
        return None
    kind, sub = field_kind(model, key)
    return sub if kind in ("model", "models") else None


def null_resets(model: type[BaseModel], key: str) -> bool:
    """Whether `key: null` means "back to the default" (a section, list or mapping with a default,
    which cannot be null itself) rather than the value null (`every_n_steps: null`) or a mistake."""
    field = model.model_fields.get(_field_name(model, key))
    if field is None or field.is_required():
        return False
    kinds = unwrap(field.annotation)
    if type(None) in kinds:
        return False
    return any(
        (isinstance(kind, type) and issubclass(kind, BaseModel)) or typing.get_origin(kind) in (list, dict)
        for kind in kinds
    )


def is_mapping(model: type[BaseModel], key: str) -> bool:
    """Whether `key` holds a free-form mapping (pass-through options)."""
    field = model.model_fields.get(_field_name(model, key))
    return field is not None and any(typing.get_origin(kind) is dict for kind in unwrap(field.annotation))
