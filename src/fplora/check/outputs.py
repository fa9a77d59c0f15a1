"""The folders fplora and musubi-tuner write into must be folders they can write.

An `output_dir` that names an existing file, or a folder that cannot be written, passed `check`
and failed only when training began (a traceback from `mkdir`, after the caches were filled).
Checked here, before any GPU work, at the spec line that names the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from fplora.problems import Problem, display_path
from fplora.spec.load import KeyPath
from fplora.spec.models import Spec


def _written_folders(spec: Spec) -> list[tuple[KeyPath, Path]]:
    """The folders the spec names that runs write into (none of them may be a file)."""
    folders: list[tuple[KeyPath, Path]] = [(("train", "output_dir"), spec.train.output_dir)]
    if spec.train.logging.logging_dir is not None:
        folders.append((("train", "logging", "logging_dir"), spec.train.logging.logging_dir))
    if spec.infer.save_dir is not None:
        folders.append((("infer", "save_dir"), spec.infer.save_dir))
    for index, dataset in enumerate(spec.datasets):
        if dataset.cache_directory is not None:
            folders.append((("datasets", index, "cache_directory"), dataset.cache_directory))
    if spec.eval is not None and spec.eval.cache_directory is not None:
        folders.append((("eval", "cache_directory"), spec.eval.cache_directory))
    return folders


def folder_problem(folder: Path) -> tuple[str, str] | None:
    """(what is wrong, the fix) when `folder` cannot be a folder fplora writes into, else None.

    A folder not made yet is judged by the nearest existing folder above it, where it would be made."""
    if folder.exists():
        if not folder.is_dir():
            return (
                f"{display_path(folder)} is a file, not a folder",
                "name a folder (or move the file away)",
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            return (
                f"{display_path(folder)} is not writable",
                "name a folder you can write, or fix its permissions",
            )
        return None
    above = folder.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        return (
            f"{display_path(folder)} cannot be made: {display_path(above)} is a file",
            "name a folder (or move the file away)",
        )
    if not os.access(above, os.W_OK | os.X_OK):
        return (
            f"{display_path(folder)} cannot be made: {display_path(above)} is not writable",
            "name a folder you can write, or fix the permissions",
        )
    return None


def check_output_folders(spec: Spec) -> list[Problem]:
    problems = []
    for key_path, folder in _written_folders(spec):
        found = folder_problem(folder)
        if found is not None:
            problems.append(spec.problem(key_path, *found))
    return problems
