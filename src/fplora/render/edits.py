"""What a hand edit of a rendered config.toml or dataset.toml changed, key by key, and where each key
belongs in a spec: so that refusing to overwrite an edited file (`plan.write`) can say which change
would be lost and how to keep it, instead of only that the file was edited."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from fplora.musubi import schema
from fplora.musubi.names import SCRIPTS
from fplora.spec.rules.pass_through import DATASET_KEYS, rendered_options


def _toml_value(value: object) -> str:
    return tomli_w.dumps({"x": value}).strip().removeprefix("x = ")


def _changed(now: dict[str, Any], then: dict[str, Any], prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, option name, what changed) for each key whose value differs."""
    found = []
    for key in sorted(set(now) | set(then)):
        if now.get(key) == then.get(key):
            continue
        if key not in then:
            what = f"{prefix}{key} = {_toml_value(now[key])} added"
        elif key not in now:
            what = f"{prefix}{key} removed"
        else:
            what = f"{prefix}{key} = {_toml_value(now[key])}, was {_toml_value(then[key])}"
        found.append((f"{prefix}{key}", key, what))
    return found


def _config_place(key: str) -> str:
    owners = rendered_options()["config"]
    if owners.get(key):
        return f"{key}: {owners[key]}"
    if key in owners:
        return f"{key}: fplora's own, leave it out"
    if key in schema.script_options(SCRIPTS["train"]):
        return f"{key}: musubi: config:"
    return f"{key}: not an option of {SCRIPTS['train']}"


def _dataset_changes(now: dict[str, Any], then: dict[str, Any]) -> list[tuple[str, str]]:
    """dataset.toml's [general] and each [[datasets]] entry, key by key, with the spec field."""
    found = [
        (what, f"{name}: {DATASET_KEYS.get(name, 'fplora sets it from the spec, leave it out')}")
        for _, name, what in _changed(now.get("general", {}), then.get("general", {}), "general.")
    ]
    entries, rendered = now.get("datasets", []), then.get("datasets", [])
    for index in range(max(len(entries), len(rendered))):
        mine = entries[index] if index < len(entries) else {}
        ours = rendered[index] if index < len(rendered) else {}
        for _, name, what in _changed(mine, ours, f"datasets[{index}]."):
            field = DATASET_KEYS.get(name)
            if field is not None and field.startswith("data.") and name in _DATASET_ENTRY_KEYS:
                field = f"datasets[{index}].{name} (or data.{name} for every dataset)"
            found.append((what, f"{name}: {field or 'fplora sets it from the spec, leave it out'}"))
    return found


_DATASET_ENTRY_KEYS = {"resolution", "batch_size", "num_repeats", "enable_bucket", "bucket_no_upscale"}
"""dataset.toml keys a spec's datasets[] entry may set for itself."""


def hand_edits(path: Path, edited: str, rendered: str) -> tuple[list[str], list[str]] | None:
    """(what a hand edit of config.toml or dataset.toml changed, where each key goes in a spec), read
    from the file against what the spec renders now; None for another file, one that does not
    parse, or an edit that changed no key (a comment)."""
    if path.suffix != ".toml" or not path.name.startswith(("config", "dataset")):
        return None
    try:
        now, then = tomllib.loads(edited), tomllib.loads(rendered)
    except tomllib.TOMLDecodeError:
        return None
    if path.name.startswith("dataset"):
        pairs = _dataset_changes(now, then)
    else:
        pairs = [(what, _config_place(name)) for _, name, what in _changed(now, then)]
    if not pairs:
        return None
    return [what for what, _ in pairs], [place for _, place in pairs]
