"""musubi-tuner's real interface, read from the bundled snapshot `schema.json`.

The snapshot was produced by introspecting musubi-tuner's own argparse parsers, dataset schema and
prompt-line parsers at one pinned commit. It is fplora's single source of truth for option names,
value types and choices: the spec's pass-through keys are checked against it at run time, and the
tests check every rendered TOML key and argv flag against it. Nothing here imports musubi-tuner.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@cache
def schema() -> dict[str, Any]:
    """The whole snapshot, parsed once per process."""
    return json.loads(resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8"))


@cache
def accelerate_schema() -> dict[str, Any]:
    """`accelerate launch`'s options at the version musubi-tuner pins."""
    text = resources.files(__package__).joinpath("accelerate-launch.json").read_text(encoding="utf-8")
    return json.loads(text)


def pinned_commit() -> str:
    return schema()["musubi_tuner_commit"]


def pinned_version() -> str:
    return schema()["musubi_tuner_version"]


@dataclass(frozen=True)
class Option:
    """One argparse option of a musubi-tuner (or accelerate) script."""

    dest: str
    flags: tuple[str, ...]
    type: str | None
    nargs: Any
    choices: tuple[Any, ...] | None
    store_true: bool
    default: Any

    @property
    def flag(self) -> str:
        """The first (canonical) option string."""
        return self.flags[0]

    @property
    def is_list(self) -> bool:
        return self.nargs in ("*", "+") or (isinstance(self.nargs, int) and self.nargs > 1)

    @property
    def takes_value(self) -> bool:
        """Whether the option reads a value after its flag (not a store_true or store_const)."""
        return not self.store_true and self.nargs != 0


def _option(raw: dict[str, Any]) -> Option:
    store_true = raw.get("store_true", raw.get("action") == "_StoreTrueAction")
    choices = tuple(raw["choices"]) if raw.get("choices") else None
    return Option(
        dest=raw["dest"],
        flags=tuple(raw["option_strings"]),
        type=raw.get("type"),
        nargs=raw.get("nargs"),
        choices=choices,
        store_true=bool(store_true),
        default=raw.get("default"),
    )


@cache
def script_options(script: str) -> dict[str, Option]:
    """Options of one musubi-tuner entry point, by dest name."""
    return {o["dest"]: _option(o) for o in schema()["scripts"][script]["options"]}


@cache
def accelerate_options() -> dict[str, Option]:
    """`accelerate launch` options, by dest name."""
    return {o["dest"]: _option(o) for o in accelerate_schema()["options"]}


@cache
def dataset_keys(table: str) -> dict[str, str]:
    """Keys allowed in dataset.toml's `general` or `image_dataset` tables, with their type names."""
    return {k: v["type"] for k, v in schema()["dataset_config"][table].items()}


def prompt_options(kind: str) -> dict[str, dict[str, Any]]:
    """Prompt-line options: kind is `training_sample_prompts` or `generate_from_file`."""
    return schema()["prompt_line_options"][kind]["options"]


def one_frame_tokens() -> list[str]:
    """Allowed one-frame inference mode tokens (`default`, `no_2x`, `target_index=<int>`, ...)."""
    return schema()["prompt_line_options"]["one_frame_inference_tokens"]["tokens"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits_scalar(type_name: str | None, value: Any) -> bool:
    if type_name == "int":
        return _is_int(value)
    if type_name in ("float", "_int_or_float"):
        return _is_int(value) or isinstance(value, float)
    return isinstance(value, str)  # str, Path and untyped options take text


def value_problem(option: Option, value: Any) -> str | None:
    """Why `value` cannot be written as a TOML value for `option`, or None when it fits.

    musubi-tuner's `--config_file` skips argparse's conversion and choices check, so the TOML
    value must already have the real type: bool for store_true, list for nargs='*', etc.
    """
    if option.store_true:
        return None if isinstance(value, bool) else "expects true or false"
    if option.is_list:
        if not isinstance(value, list):
            return f"expects a list of {option.type or 'str'}"
        bad = [v for v in value if not _fits_scalar(option.type, v)]
        return f"expects a list of {option.type or 'str'}, got {bad[0]!r}" if bad else None
    if not _fits_scalar(option.type, value):
        return f"expects {option.type or 'str'}, got {type(value).__name__} {value!r}"
    if option.choices and value not in option.choices:
        return f"must be one of {', '.join(map(str, option.choices))}"
    return None


def argv_text(value: Any) -> str:
    """One value as it goes on a command line: booleans as `true`/`false` (the text the options
    that take a boolean word read, such as `--compile_dynamic false`), anything else as `str()`."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
"""The words argparse takes as negative numbers, not as options (its `_negative_number_matcher`)."""


_ARGPARSE_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "_int_or_float": lambda text: float(text.removesuffix("%")),
}
"""argparse `type`s of musubi-tuner's options that fplora converts as argparse would; any other type
(a lambda of accelerate's) is left to the parser itself, which the rehearsal runs."""


def _argparse_value(type_name: str | None, text: str) -> Any:
    """`text` as argparse's `type` for the option makes it (ValueError where it refuses it)."""
    convert = _ARGPARSE_TYPES.get(type_name or "")
    return convert(text) if convert is not None else text


def argv_value_problem(option: Option, value: Any) -> str | None:
    """Why `value`, on a command line as fplora renders it (`render.commands.flags`: true for an
    option without a value → the bare flag; false or None there → nothing; a list → one word per
    item; anything else → `argv_text`), is not what argparse's parser for `option` takes, or None
    when it parses. Unlike the training config's TOML (`value_problem`), a command line goes through
    argparse's own conversion: `"30"` for an int option is 30 there, and 0 for a text option "0"."""
    if value is None:
        return None
    if not option.takes_value:
        return None if isinstance(value, bool) else "expects true or false"
    if isinstance(value, dict):
        return f"expects {option.type or 'str'}, got a mapping {value!r}"
    items = [argv_text(v) for v in value] if isinstance(value, list | tuple) else [argv_text(value)]
    nargs = option.nargs
    counts = {None: (1, 1), "?": (0, 1), "*": (0, None), "+": (1, None)}
    low, high = (nargs, nargs) if isinstance(nargs, int) else counts.get(nargs, (0, None))
    if len(items) < low or (high is not None and len(items) > high):
        wanted = f"{low}" if low == high else f"at least {low}" if high is None else f"{low} to {high}"
        return f"expects {wanted} value{'s' if high != 1 else ''}, got {len(items)}: {value!r}"
    for text in items:
        if text.startswith("-") and not _NEGATIVE_NUMBER.match(text) and " " not in text:
            return f"{text!r} would be read as an option, not as its value"
        try:
            converted = _argparse_value(option.type, text)
        except ValueError:
            return f"expects {option.type}, got {text!r}"
        if option.choices and converted not in option.choices:
            return f"must be one of {', '.join(map(str, option.choices))}, got {text!r}"
    return None


def dataset_value_problem(type_name: str, value: Any) -> str | None:
    """Why `value` fails musubi-tuner's strict (voluptuous) dataset.toml type, or None."""
    ok = {
        "str": lambda v: isinstance(v, str),
        "int": _is_int,
        "bool": lambda v: isinstance(v, bool),
        "float": lambda v: isinstance(v, float),
        "list[int]": lambda v: isinstance(v, list) and all(_is_int(x) for x in v),
        "int | [int, int]": lambda v: (
            _is_int(v) or (isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v))
        ),
    }[type_name]
    return None if ok(value) else f"expects {type_name}, got {value!r}"
