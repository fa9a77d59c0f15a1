"""Credentials stay out of specs: fplora writes what a spec says into files and prints it.

A spec's values end up in `config.toml`, the prompt files, the run manifest (the resolved spec, once
per segment) and `--dry-run` output, all of which are kept, diffed and shared. So a key that holds a
credential (`musubi: {config: {wandb_api_key: ...}}`), or a value taken from a credential's
environment variable (`${HF_TOKEN}`), is refused before anything is validated, written or printed,
with the fix: the libraries that need them read them from the environment themselves (wandb reads
`WANDB_API_KEY`, huggingface_hub `HF_TOKEN`), and fplora passes its environment to musubi-tuner.

A name is a credential's when one of its words (split at `_`, `-`, `.` and case changes) is one of
`_WORDS`: `wandb_api_key`, `huggingface_token`, `HF_TOKEN`, `db_password`. Whole words, so that
`tokenizer` or `keyframe` pass; `_NOT_CREDENTIALS` names options that contain such a word and are not
one (none of musubi-tuner's bundled FramePack options does today: `tests/test_secrets.py` checks).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fplora.problems import Problem, display_path
from fplora.spec.source import KeyPath, Loaded, dotted

_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "secrets",
        "password",
        "passwd",
        "passphrase",
        "credential",
        "credentials",
    }
)
_NOT_CREDENTIALS = frozenset({"max_token_length"})  # musubi-tuner's other trainers: the text length
_SPLIT = re.compile(r"[^a-zA-Z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# `--name=value` or `name=value` in an args list (network.args, optimizer.args)
_ARG_NAME = re.compile(r"^-{0,2}([A-Za-z][\w.-]*)(?:=|$)")
_VARIABLE = re.compile(r"^\$\{(\w+)")  # a substitution note: `${NAME} = '...'`, `${NAME:-x}: ...`

# Where each credential is read from instead; anything else gets the general fix.
_ENVIRONMENT = {
    "wandb_api_key": ("WANDB_API_KEY", "wandb reads it"),
    "huggingface_token": ("HF_TOKEN", "huggingface_hub reads it"),
    "hf_token": ("HF_TOKEN", "huggingface_hub reads it"),
}


def is_credential(name: str) -> bool:
    """Whether a key or variable name names a credential (see the module docstring)."""
    if name.lower() in _NOT_CREDENTIALS:
        return False
    return any(word.lower() in _WORDS for word in _SPLIT.split(name) if word)


def _walk(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    """Every key (and `name=value` args item) under `value` with its key path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key), str(key)
            yield from _walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str) and (match := _ARG_NAME.match(item.strip())):
                yield (*path, index), match.group(1)
            else:
                yield from _walk(item, (*path, index))


def _fix(name: str) -> str:
    variable, reader = _ENVIRONMENT.get(name.lower(), (None, None))
    if variable:
        return f"remove it and `export {variable}=…` before running fplora ({reader} from the environment)"
    return "remove it and set it in the environment of the tool that reads it, not in the spec"


def credential_problems(loaded: Loaded) -> list[Problem]:
    """One problem per credential key in the spec (any section, pass-through ones included) and per
    value expanded from a credential's environment variable; empty when the spec holds none.

    A key set to null holds nothing (it resets a base's value) and passes. The problems never
    quote the value."""
    keys = {
        path: name
        for path, name in _walk(loaded.data, ())
        if is_credential(name) and _value(loaded.data, path) is not None
    }
    problems = [
        _problem(
            loaded,
            path,
            "holds a credential, which would end up in config.toml, the run manifest and --dry-run output",
            _fix(name),
        )
        for path, name in keys.items()
    ]
    for path, notes in loaded.substitutions.items():
        if path in keys:
            continue  # said once, as the key
        names = [match.group(1) for note in notes if (match := _VARIABLE.match(note))]
        for name in (n for n in names if is_credential(n)):
            problems.append(
                _problem(
                    loaded,
                    path,
                    f"takes ${{{name}}}, a credential, which fplora would write into its files",
                    f"leave {name} in the environment only: musubi-tuner inherits fplora's environment",
                )
            )
    return sorted(set(problems))


def _problem(loaded: Loaded, path: KeyPath, message: str, fix: str) -> Problem:
    """A problem at the line that wrote `path`, without `Loaded.problem`'s `(from ${VAR} = value)`
    note: here the value is the secret."""
    source = loaded.where(path)
    return Problem(display_path(source.file), source.line, dotted(path), message, fix)


def _value(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data[part]
    return data
