"""The folders fplora and musubi-tuner write into must be folders they can write.

An `output_dir` that names an existing file, or a folder that cannot be written, passed `check`
and failed only when training began (a traceback from `mkdir`, after the caches were filled).
Checked here, before any GPU work, at the spec line that names the folder.
"""

from __future__ import annotations

from pathlib import Path

from fplora.problems import Problem
from fplora.spec.models import Spec
from fplora.spec.source import KeyPath
from fplora.writable import folder_problem


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


def check_output_folders(spec: Spec) -> list[Problem]:
    problems = []
    for key_path, folder in _written_folders(spec):
        found = folder_problem(folder)
        if found is not None:
            problems.append(spec.problem(key_path, *found))
    return problems
