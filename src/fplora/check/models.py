"""The five model files: present, readable, whole safetensors files, every shard of a split file there.

A missing or truncated model otherwise shows up minutes into a GPU job, after caching has started.
musubi-tuner loads a file named `<name>-0000k-of-0000n.<ext>` by opening all n shards from the same
folder, so naming one shard implies the others; each missing one is reported by name.

A `.safetensors` file is checked from its header alone (`fplora.safetensors`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from fplora.musubi.names import shard_names
from fplora.problems import Problem, display_path
from fplora.safetensors import safetensors_problem
from fplora.spec.models import MODEL_KEYS, Spec

_WHERE_FIX = "check the path; relative names resolve against models.dir, else the spec's folder"


def file_problem(path: Path) -> tuple[str, str] | None:
    """(message, fix) when `path` is not a non-empty readable file, or not a whole safetensors file."""
    shown = display_path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        if not path.parent.is_dir():
            return f"{shown} not found (folder {display_path(path.parent)} does not exist)", _WHERE_FIX
        return f"{shown} not found", _WHERE_FIX
    except OSError as exc:
        return f"{shown} cannot be read: {exc.strerror or exc}", "fix the path or its permissions"
    if path.is_dir():
        return f"{shown} is a folder, not a model file", "name the model file itself"
    if info.st_size == 0:
        return f"{shown} is empty (0 bytes)", "download it again"
    if not os.access(path, os.R_OK):
        return f"{shown} cannot be read: permission denied", "fix the file's permissions"
    if path.name.lower().endswith(".safetensors"):  # musubi-tuner torch.loads other VAE files
        try:
            found = safetensors_problem(path, info.st_size)
        except OSError as exc:
            return f"{shown} cannot be read: {exc.strerror or exc}", "fix the path or its permissions"
        if found is not None:
            return f"{shown} {found[0]}", found[1]
    return None


_SKIP = " (`--skip-models` checks all the rest without them)"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def _missing_folder(spec: Spec) -> Problem | None:
    """One problem for a `models.dir` that does not exist while every model is named inside it:
    five "not found" lines would hide the one thing to fix, the folder (on a laptop, or before the
    models are downloaded, that is the usual case). When `${VAR}` gave the folder, the fix is the
    variable (`FPLORA_MODELS_DIR` in `fplora init`'s base.yaml)."""
    folder = spec.models.dir
    if folder is None or folder.is_dir():
        return None
    if not all(folder in getattr(spec.models, key).parents for key in MODEL_KEYS):
        return None
    problem = spec.problem(
        ("models", "dir"),
        f"folder {display_path(folder)} does not exist, so none of the five models can be found",
        f"set models.dir to the folder that holds them{_SKIP}",
    )
    variable = _VARIABLE.search(problem.message)  # `spec.problem` notes the `${VAR}` that gave it
    if variable is not None:
        name = variable.group(1)
        fix = f"export {name}=<the folder that holds the models>, or set models.dir{_SKIP}"
        return Problem(problem.file, problem.line, problem.key, problem.message, fix)
    return problem


def check_models(spec: Spec) -> Iterator[Problem]:
    """One problem per missing, empty or unreadable model file or shard (one in all when the
    `models.dir` folder itself is missing)."""
    if (folder := _missing_folder(spec)) is not None:
        yield folder
        return
    for key in MODEL_KEYS:
        path: Path = getattr(spec.models, key)
        found = file_problem(path)
        if found is not None:
            yield spec.problem(("models", key), *found)
        if found is not None and not path.parent.is_dir():
            continue  # the folder is missing: one problem says it all
        for name in shard_names(path.name):
            shard = path.parent / name
            if shard == path:
                continue
            shard_found = file_problem(shard)
            if shard_found is None:
                continue
            message, fix = shard_found
            if message.endswith(" not found"):
                count = len(shard_names(path.name))
                message = f"missing shard {display_path(shard)}"
                fix = f"all {count} shards must be in the same folder"
            yield spec.problem(("models", key), message, fix)
