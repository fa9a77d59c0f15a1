"""Pydantic's validation errors, said the way fplora says problems: where, what, what to do.

Locations lose Pydantic's union-branch labels, unknown keys get the nearest valid name (also one
level down: `train.learnig_rate` → `optimizer.learning_rate`), and messages read as sentences.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fplora.musubi import schema
from fplora.musubi.names import PASS_THROUGH_SCRIPT
from fplora.problems import Problem, plural, yaml_value
from fplora.spec.fields import field_kind, keys_of, section
from fplora.spec.models import Spec
from fplora.spec.rules.pass_through import DATASET_KEYS, OVERRULING, OWNED_FIX, rendered_options
from fplora.spec.source import KeyPath, Loaded, Source
from fplora.spec.syntax import KEY_WITHOUT_COLON
from fplora.suggest import closest

MISSING = "required key is missing"
SECTIONS_MISSING = "required sections "  # then the keys and "are missing"


def _model_at(loc: KeyPath) -> type[BaseModel] | None:
    """The model class that holds the last key of a validation error's location."""
    model: type[BaseModel] | None = Spec
    for part in loc[:-1]:
        if not isinstance(part, int):
            model = section(model, part)
    return model


def _shown(value: Any) -> str:
    """A wrong value as the user wrote it: text quoted, numbers as numbers, else what it is."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _what(value)


def _number(bound: Any) -> str:
    """A bound as the user would write it: `0`, not Pydantic's `0.0` for a float field."""
    return str(int(bound)) if isinstance(bound, float) and bound.is_integer() else str(bound)


def _entries(count: int) -> str:
    return plural(count, "entry", "entries")


def _choices_hint(value: Any, expected: str) -> str:
    """`did you mean 'bf16'?` for a misspelt choice (Pydantic's `expected` lists them quoted)."""
    choices = re.findall(r"'([^']*)'", expected)
    close = closest(str(value), choices) if isinstance(value, str) else None
    return f"did you mean '{close}'?" if close else ""


def _said(kind: str, value: Any, ctx: dict[str, Any]) -> tuple[str, str] | None:
    """(message, fix) in fplora's words for Pydantic error type `kind`, or None to keep Pydantic's.

    Pydantic's own sentences name its internals ("List should have at least 1 item after
    validation", "unable to parse string as an integer"); a spec's author wrote YAML, so the message
    says what the value should be and what it was instead."""
    shown = _shown(value)
    if kind in ("int_parsing", "int_type"):
        return f"should be a whole number, not {shown}", "write digits only, e.g. 16"
    if kind == "int_from_float":
        return f"should be a whole number, not {shown}", "leave out the fraction"
    if kind in ("float_parsing", "float_type"):
        return f"should be a number, not {shown}", "write e.g. 16, 0.5 or 1.0e-3"
    if kind == "finite_number":
        return "should be a finite number, not infinity or NaN", "write e.g. 1.0"
    if kind in ("bool_parsing", "bool_type"):
        return f"should be true or false, not {shown}", "write true or false, without quotes"
    if kind == "string_type":
        fix = f'quote it: "{value}"' if _is_scalar(value) else "write text"
        return f"should be text, not {shown}", fix
    if kind == "string_too_short":
        return "must not be empty", "write a value, or remove the key"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        found = ctx.get("actual_length", 0)
        return (
            f"needs at least {_entries(least)}, has {found or 'none'}",
            "add one" if least == 1 else "add entries",
        )
    if kind == "too_long":
        return (
            f"takes at most {_entries(ctx.get('max_length', 0))}, has {ctx.get('actual_length', '')}",
            "remove the extra ones",
        )
    if kind == "greater_than":
        return f"should be more than {_number(ctx.get('gt'))}, not {shown}", ""
    if kind == "greater_than_equal":
        return f"should be at least {_number(ctx.get('ge'))}, not {shown}", ""
    if kind == "less_than":
        return f"should be less than {_number(ctx.get('lt'))}, not {shown}", ""
    if kind == "less_than_equal":
        return f"should be at most {_number(ctx.get('le'))}, not {shown}", ""
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        return f"should be {expected}, not {shown}", _choices_hint(value, expected)
    if kind == "string_pattern_mismatch":
        return "must be one word", "use letters, digits, '-', '_' or '.', no spaces or slashes"
    return None


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


DATASET_FOLDERS = ("image_directory", "control_directory", "video_directory")
"""musubi-tuner's dataset.toml keys for a folder of pictures and captions, which fplora replaces by a
JSONL of records."""


def _musubi_name_hint(loc: KeyPath) -> str | None:
    """Where a musubi-tuner option goes, for one written in a spec by its musubi-tuner name (a
    kohya-style TOML habit: `train.network_dim`, `musubi.max_grad_norm`): the spec field that renders
    it, or the pass-through section that takes it; None for a name musubi-tuner does not know."""
    key = str(loc[-1])
    if key in DATASET_FOLDERS:
        return (
            f"a spec names a JSONL of records, not musubi-tuner's {key}: `fplora dataset init <folder of"
            " pictures>` writes one (targets with control_0/, control_1/ and <stem>.txt captions); name it"
            " in datasets[].jsonl"
        )
    if key == "image_jsonl_file":
        return "musubi-tuner's image_jsonl_file is datasets[].jsonl in a spec: set it there"
    if key in DATASET_KEYS and not DATASET_KEYS[key].startswith(f"{loc[0]}."):
        return f"musubi-tuner's {key} is {DATASET_KEYS[key]} in a spec: set it there"
    sections = list(PASS_THROUGH_SCRIPT)
    if loc[0] in ("infer", "sample"):
        sections.sort(key=lambda name: name != "generate")
    owners = rendered_options()
    for name in sections:
        owner = owners.get(name, {}).get(key)
        if owner is not None:
            return f"musubi-tuner's {key} is {owner} in a spec: set it there"
    for name in sections:
        if key in owners.get(name, {}):
            return f"musubi-tuner's {key} is fplora's to set: {OWNED_FIX.get(key, 'remove it')}"
    for name in sections:
        if (name, key) in OVERRULING:  # an option fplora refuses to pass: what to write instead
            return f"musubi-tuner's {key} is not taken: {OVERRULING[name, key][1]}"
        if key in schema.script_options(PASS_THROUGH_SCRIPT[name]):
            return f"musubi-tuner's {key} has no spec field: write it under musubi: {name}:"
    return None


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
    if isinstance(value, str) and (unsplit := _key_without_colon(model, value)) is not None:
        return unsplit
    if first is not None and _is_scalar(value):
        line = f"- {first}: {value}" if isinstance(loc[-1], int) else f"{loc[-1]}: {{{first}: {value}}}"
        return message, f'write "{line}"'
    if value is None:  # a section's null resets it to its default (`spec._drop_nulls`) unless required
        return message, (
            "give it keys: it is required" if isinstance(loc[-1], str) else "give it keys, or remove it"
        )
    return message, f"write its keys under it: {', '.join(sorted(keys_of(model)))}"


def _key_without_colon(model: type[BaseModel], value: str) -> tuple[str, str] | None:
    """(message, fix) for a section whose one line is one of its keys and a value without the `: `
    between them (`max_train_steps 200`, `max_train_steps:200`): YAML read the line as the
    section's text, and the shape of a mapping is not what the author needs to hear."""
    found = KEY_WITHOUT_COLON.match(value)
    if found is None or found.group(2) not in keys_of(model):
        return None
    key, first = found.group(2), found.group(3).split()[0]
    return (
        f"holds the text `{value}`: a key without ': ' after it, which YAML does not read as a key",
        f"write `{key}: {first}` on its line",
    )


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


_ONE_WORD = re.compile(r"[/\\\s]+")
"""What keeps a version from being one word (the Spec's `version` pattern)."""


def validation_problems(error: ValidationError, loaded: Loaded) -> list[Problem]:
    """Pydantic's errors as located one-line problems: file, line, dotted key, message, fix."""
    problems = []
    missing_sections: list[str] = []
    for item in error.errors():
        loc = _real_loc(item["loc"], loaded.data)
        kind = item["type"]
        message = item["msg"].removeprefix("Value error, ").replace("Input should be", "should be")
        fix = ""
        if kind == "extra_forbidden":
            model = _model_at(loc)
            message, fix = "unknown key", "remove it"
            if model is not None:
                fix = _musubi_name_hint(loc) or _unknown_key_hint(model, str(loc[-1]))
        elif kind == "missing":
            message, fix = MISSING, "add it"
            if len(loc) == 3 and loc[0] == "datasets" and loc[2] == "jsonl":
                fix = (
                    "add it: the dataset's JSONL of records (`fplora dataset init <folder of pictures>`"
                    " writes one)"
                )
            if len(loc) == 1:
                missing_sections.append(str(loc[0]))
                continue
        elif kind == "model_type" and loc:
            message, fix = _mapping_problem(loc, item.get("input"))
        elif kind == "list_type" and loc and (found := _list_problem(loc, item.get("input"))):
            message, fix = found
        elif kind == "dict_type" and loc:
            message, fix = _dict_problem(loc, item.get("input"))
        elif (said := _said(kind, item.get("input"), item.get("ctx") or {})) is not None:
            message, fix = said
        elif " — " in message:
            message, fix = message.split(" — ", 1)
        was = loaded.nulled.get(tuple(loc)) if item.get("input") is None else None
        if was is not None and not isinstance(was[0], dict | list):  # null resets a section or a list
            message, fix = _null_over_base(*was)
        if tuple(loc) == ("version",) and ("version",) not in loaded.sources:
            # not written: the file's name is the version (`v1 copy.yaml`, as a file manager copies)
            message = f"{loaded.path.stem!r} (the file's name) {message}"
            fix = f"rename the file, e.g. {_ONE_WORD.sub('-', loaded.path.stem)}{loaded.path.suffix}"
        problems.append(loaded.problem(loc, message, fix))
    return _missing_sections(missing_sections, loaded) + _dedupe(problems)


def _null_over_base(value: Any, source: Source) -> tuple[str, str]:
    """A `null` written over a value a base wrote, for a key that takes no null: only the settings a
    GPU preset chooses read null as "let fplora choose" (README), so say that, and how to keep the
    base's value, rather than pydantic's "should be a whole number, not empty"."""
    shown = repr(value) if isinstance(value, str) else yaml_value(value)
    return (
        "null does not give this key back: only the settings a GPU preset chooses take null"
        ' ("let fplora choose")',
        f"remove the line to keep {shown} from {source.shown}, or write a value",
    )


def _bases_setting(keys: list[str], spec: Path) -> list[Path]:
    """Other spec files in the spec's folder that set every one of `keys` at the top level,
    `base.yaml` first: the files the spec most likely meant to extend."""
    found = []
    for other in sorted(spec.parent.glob("*.y*ml")):
        if other == spec:
            continue
        try:
            text = other.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if all(re.search(rf"^{re.escape(key)}:", text, re.MULTILINE) for key in keys):
            found.append(other)
    return sorted(found, key=lambda path: path.stem != "base")


def _missing_sections(keys: list[str], loaded: Loaded) -> list[Problem]:
    """Missing top-level keys: one problem each, or, when several are missing from a spec that
    extends nothing, one problem that suggests the `extends:` it most likely forgot (a version
    spec without it misses the base's models, one_frame and train all at once)."""
    if len(keys) < 2 or len(loaded.chain) > 1:
        return [loaded.problem((key,), MISSING, "add it") for key in keys]
    message = f"{SECTIONS_MISSING}{', '.join(keys)} are missing"
    bases = _bases_setting(keys, loaded.path)
    if bases:
        name = bases[0].name
        fix = f"did you forget `extends: {name}`? ({name} beside this file sets them)"
    else:
        fix = "add them, or `extends:` the spec that sets them (as `fplora init`'s configs/v1.yaml does)"
    return [loaded.problem((), message, fix)]


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
