"""Load a spec file into a validated `Spec`, or fail with one located problem per mistake."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fplora.problems import Problem, UserError, display_path
from fplora.spec.errors import MISSING, SECTIONS_MISSING, validation_problems
from fplora.spec.fields import field_kind, is_mapping, null_resets
from fplora.spec.load import extending, load
from fplora.spec.models import PRESET_CHOSEN, Models, Spec
from fplora.spec.rules import check_rules, spec_warnings
from fplora.spec.secrets import credential_problems
from fplora.spec.source import KeyPath, Loaded

__all__ = ["RulesFailed", "Spec", "load_spec", "revalidate", "validate"]


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


def _drop_nulls(data: dict[str, Any], model: type[BaseModel]) -> None:
    """`null` resets a section, a list or a pass-through mapping, or one pass-through option, to its
    default: in a spec that extends another, it drops what the base set (`sample: null`,
    `musubi: {config: {max_grad_norm: null}}`). Where null is a value (`every_n_steps: null` turns
    sampling off) it stays; a required section stays null and is reported as empty."""
    for key in list(data):
        value = data[key]
        kind, sub = field_kind(model, key)
        if value is None:
            if null_resets(model, key):
                del data[key]
        elif kind == "model" and isinstance(value, dict):
            _drop_nulls(value, sub)
        elif kind == "models" and isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _drop_nulls(item, sub)
        elif is_mapping(model, key) and isinstance(value, dict):
            for option in [k for k, v in value.items() if v is None]:
                del value[option]


def _unpin(data: dict[str, Any], loaded: Loaded) -> None:
    """`blocks_to_swap: null` (and the other settings a GPU preset chooses) in a spec means "let
    fplora choose", whatever a file it extends wrote: the key counts as unwritten, so a preset
    chooses it, or without one the default (or `without_preset:`) applies. Where the null was
    written is kept for `check` to say."""
    train = data.get("train")
    if not isinstance(train, dict):
        return
    for key in PRESET_CHOSEN:
        if key in train and train[key] is None:
            del train[key]
            source = loaded.sources.pop(("train", key), None)
            if source is not None:
                loaded.unpinned[("train", key)] = source


def _without_preset(spec: Spec) -> Spec:
    """The spec with `without_preset:`'s values for the preset settings `train:` leaves unwritten.
    They stay unwritten (`Spec.written`), so that a GPU preset still chooses its own."""
    house = spec.without_preset.model_dump(exclude_none=True)
    update = {key: value for key, value in house.items() if not spec.written(("train", key))}
    if not update:
        return spec
    return spec.model_copy(update={"train": spec.train.model_copy(update=update)})


def load_spec(path: str | Path) -> Spec:
    """Load, merge, resolve and validate a spec; raise `UserError` listing every problem. A base
    (`fplora init`'s base.yaml) named as the spec is said to be one, with a version to name instead:
    'datasets: required key is missing — add it' would have the user add a dataset to the base."""
    loaded = load(Path(path))
    try:
        return validate(loaded)
    except RulesFailed:
        raise
    except UserError as error:
        missing = [key for p in error.problems if p.severity == "error" for key in _missing(p)]
        versions = extending(loaded.path) if missing else []
        if not versions:
            raise
        shown = [display_path(v) for v in versions]
        raise UserError(
            Problem(
                display_path(loaded.path),
                None,
                "",
                f"is the base that {', '.join(shown[:3])}{' and more' if len(shown) > 3 else ''}"
                f" {'extends' if len(shown) == 1 else 'extend'}, not a spec on its own"
                f" ({', '.join(missing)} missing)",
                f"name a version instead, e.g. {shown[0]}",
            )
        ) from None


def _missing(problem: Problem) -> list[str]:
    """The required keys a problem says are missing (`errors.MISSING`, or several sections at once)."""
    if problem.message == MISSING:
        return [problem.key]
    if problem.message.startswith(SECTIONS_MISSING) and problem.message.endswith(" are missing"):
        return problem.message.removeprefix(SECTIONS_MISSING).removesuffix(" are missing").split(", ")
    return []


def validate(loaded: Loaded) -> Spec:
    """`load_spec`'s second half, for a caller that already holds the loaded file (`fplora cache
    status` reads each spec's `extends:` chain and then validates it, without reading it twice).
    Takes `loaded` over: its data and sources are changed in place."""
    secrets = credential_problems(loaded)  # before anything could print or keep a value
    if secrets:
        raise UserError(secrets)
    data = loaded.data
    data.setdefault("version", loaded.path.stem)
    _unpin(data, loaded)
    _drop_nulls(data, Spec)
    _resolve_paths(data, Spec, loaded, ())
    try:
        spec = Spec.from_file(data, loaded)
    except ValidationError as error:
        raise UserError([*loaded.warnings, *validation_problems(error, loaded)]) from None
    spec = _without_preset(spec)
    problems = check_rules(spec)
    if problems:
        raise RulesFailed([*spec_warnings(spec), *problems], spec)
    return spec


class RulesFailed(UserError):
    """`load_spec`'s refusal of a spec that validated but breaks a cross-field rule. It carries the
    spec, so that `fplora check` can still check the files it names and show every problem at once,
    instead of one round of rules and, once they are fixed, a second of records and images."""

    def __init__(self, problems: list[Problem], spec: Spec):
        super().__init__(problems)
        self.spec = spec


def revalidate(spec: Spec) -> Spec:
    """`spec` validated again, as `load_spec` validated the file: field types, each section's own
    validators and the cross-field rules. For a spec changed in code (a GPU preset patches it with
    `model_copy(update=)`, which skips validation), so a change that breaks a rule is refused here
    rather than on the GPU. Keeps the spec's file and source map; raises `UserError`."""
    try:
        checked = Spec.model_validate(spec.model_dump(round_trip=True))
    except ValidationError as error:
        raise UserError(
            spec.problem(tuple(item["loc"]), item["msg"].replace("Input should be", "should be"))
            for item in error.errors()
        ) from None
    checked._path, checked._sources = spec._path, spec._sources
    problems = check_rules(checked)
    if problems:
        raise UserError(problems)
    return checked
