"""A generate save folder belongs to one LoRA: its record, and the runs that may go into it.

Folders are named the memo's way (`v8-step00005000-lm1.2`), which a branch after a resume or a
replaced file would share. Each folder's `fplora-infer.json` records the LoRA (path, size,
musubi-tuner's hash of the weights, a fingerprint) and every run into it (command, generate options
and prompt lines, files written). A run into a folder made from other weights is refused before any
process starts; a run with other settings is allowed and noted (its files are new, and the record
says which run wrote which).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fplora import __version__
from fplora.atomic import write_atomic
from fplora.musubi.names import GENERATE_OUTPUTS, TRAINING_SAMPLE_DIR
from fplora.problems import Problem, display_path, note, plural
from fplora.runs.checkpoints import Checkpoint
from fplora.runs.loras import describe, same_lora
from fplora.runs.manifest import now
from fplora.spec.models import Spec

FOLDER_RECORD = "fplora-infer.json"
"""fplora's record of the LoRA a save folder's files were made from, and of each run into it."""

GENERATE_LOG = "generate.log"

_OWN_OPTIONS = ("--save_path", "--lora_weight", "--lora_multiplier", "--from_file")
"""Generate options that are the folder's identity or a path, not a setting of its files."""


def save_root(spec: Spec) -> Path:
    """Where an infer's folders go: `infer.save_dir`, else the training output's `sample/`."""
    return spec.infer.save_dir or spec.train.output_dir / TRAINING_SAMPLE_DIR


def save_dir_name(version: str, checkpoint: Checkpoint, multiplier: float) -> str:
    """The memo's naming: `v8-step00005000-lm1.2`."""
    if checkpoint.step is not None:
        which = f"step{checkpoint.step:08d}"
    else:
        which = "final" if checkpoint.final else checkpoint.path.stem
    return f"{version}-{which}-lm{float(multiplier)}"


_SAVE_DIR = re.compile(r"^(?P<version>.+)-(?P<which>step\d{8}|final)-lm(?P<multiplier>[0-9.e+-]+)$")
_OTHER_SAVE_DIR = re.compile(r"^(?P<version>[^-]+)-(?P<which>.+)-lm(?P<multiplier>[0-9.e+-]+)$")


def parse_save_dir_name(name: str) -> tuple[str, str, float] | None:
    """A `save_dir_name` read back: (version, `step00005000` / `final` / the LoRA file's stem,
    multiplier); None for a folder not named so."""
    match = _SAVE_DIR.match(name) or _OTHER_SAVE_DIR.match(name)
    if not match:
        return None
    try:
        multiplier = float(match["multiplier"])
    except ValueError:
        return None
    return match["version"], match["which"], multiplier


def _options(argv: list[str]) -> dict[str, list[str]]:
    """`--name value...` of a command line, the musubi Python and fplora's own paths left out."""
    options: dict[str, list[str]] = {}
    key = None
    for token in argv[1:]:
        if token.startswith("--"):
            key = token
            options[key] = []
        elif key is not None and token != "-m":
            options[key].append(token)
        else:
            key = None
    for own in _OWN_OPTIONS:
        options.pop(own, None)
    return options


def infer_settings(prompts_file: str, argv: list[str]) -> dict[str, Any]:
    """What a folder's files depend on besides the LoRA and multiplier: generate's options and the
    rendered prompt lines (seed, steps, size, images and caption of each)."""
    prompts = [line for line in prompts_file.splitlines() if line.strip() and not line.startswith("#")]
    return {"options": _options(argv), "prompts": prompts}


def _settings_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """`--infer_steps 2 → 3, the prompt lines`; "" when nothing changed."""
    changes = []
    before, after = old.get("options", {}), new.get("options", {})
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            was = " ".join(before[key]) if key in before else "(unset)"
            now_ = " ".join(after[key]) if key in after else "(unset)"
            changes.append(f"{key} {was or 'on'} → {now_ or 'on'}")
    if old.get("prompts") != new.get("prompts"):
        changes.append("the prompt lines")
    return ", ".join(changes)


def read_record(folder: Path) -> dict[str, Any] | None:
    """A folder's record; None when there is none. Raises ValueError when it cannot be read."""
    path = folder / FOLDER_RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(str(error)) from None
    if not isinstance(record, dict) or not isinstance(record.get("lora"), dict):
        raise ValueError("no lora entry")
    record.setdefault("runs", [])
    return record


def write_record(folder: Path, record: dict[str, Any]) -> None:
    write_atomic(folder / FOLDER_RECORD, json.dumps(record, indent=1, ensure_ascii=False) + "\n")


@dataclass
class Pair:
    """One generate run: a checkpoint at a multiplier into its folder."""

    checkpoint: Checkpoint
    multiplier: float
    save_path: Path
    argv: list[str]
    settings: dict[str, Any]
    identity: dict[str, Any] | None  # lora_identity; None for a checkpoint not trained yet (dry run)
    record: dict[str, Any] | None = None  # the folder's record, as found


_MOVE = "move that folder away, or set infer.save_dir to generate somewhere else"


def folder_problem(pair: Pair) -> tuple[Problem | None, Problem | None]:
    """(a refusal, a note) for running `pair` into its folder as the folder is now."""
    folder, checkpoint = pair.save_path, pair.checkpoint
    where = display_path(folder)
    try:
        record = read_record(folder)
    except ValueError as error:
        problem = Problem(where, None, "", f"its {FOLDER_RECORD} cannot be read ({error})", _MOVE)
        return problem, None
    pair.record = record
    if record is None:
        kinds = {kind for kinds in GENERATE_OUTPUTS.values() for kind in kinds}
        old = sum(1 for kind in kinds for _ in folder.glob(kind.glob)) if folder.is_dir() else 0
        if not old:
            return None, None
        return None, note(
            f"{where} already holds {plural(old, 'generate output file')} from before"
            " fplora kept a record of which LoRA"
            f" made a folder's files; they may be of another checkpoint than {describe(checkpoint)}"
        )
    was = record["lora"]
    # a dry run may name a checkpoint not trained yet: it cannot be the one that made these files
    same = pair.identity is not None and same_lora(was, pair.identity)
    if not same:
        recorded = display_path(was.get("path", "?"))
        label = f" ({was['label']})" if was.get("label") else ""
        replaced = (
            ", since replaced by another file of that name"
            if Path(str(was.get("path", ""))) == checkpoint.path.resolve()
            else ""
        )
        message = (
            f"holds files made from {recorded}{label}{replaced}, not from {describe(checkpoint)}"
            " — mixing them would make the folder's images impossible to tell apart"
        )
        return Problem(where, None, "", message, _MOVE), None
    last = record["runs"][-1].get("settings") if record["runs"] else None
    change = _settings_change(last, pair.settings) if isinstance(last, dict) else ""
    if not change:
        return None, None
    return None, note(
        f"{where} holds files of {checkpoint.label} made with other infer settings ({change});"
        f" the new ones go beside them, and {FOLDER_RECORD} lists which run wrote which"
        " (set infer.save_dir to keep them apart)"
    )


def collisions(pairs: list[Pair]) -> list[Problem]:
    """Two checkpoints of one command that would share a folder (same global step, other files)."""
    problems = []
    by_folder: dict[Path, Pair] = {}
    for pair in pairs:
        first = by_folder.setdefault(pair.save_path, pair)
        if first is not pair:
            problems.append(
                Problem(
                    "command line",
                    None,
                    "--lora",
                    f"{describe(first.checkpoint)} and {describe(pair.checkpoint)} would both write to"
                    f" {display_path(pair.save_path)}",
                    "give one of them per command, with infer.save_dir set for the other",
                )
            )
    return problems


def begin_run(pair: Pair, command: str, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Record in the folder that a run of `pair` starts: (the record, this run's entry, to be
    completed with `ended`, `files` and `exit_code` or `error` and written again)."""
    pair.save_path.mkdir(parents=True, exist_ok=True)
    record = pair.record or {"lora": {**(pair.identity or {}), "label": pair.checkpoint.label}}
    record["multiplier"] = pair.multiplier
    run: dict[str, Any] = {"started": now(), "command": command, "settings": pair.settings, **extra}
    record.setdefault("runs", []).append(run)
    pair.record = record
    write_record(pair.save_path, record)
    return record, run


def log_header(log: Path, command: str, pair: Pair) -> int:
    """Start this run's part of the folder's log with who wrote it; the offset where its output begins."""
    separator = "\n" if log.exists() and log.stat().st_size else ""
    text = (
        f"{separator}===== {now()} fplora {__version__} (pid {os.getpid()}): {command}\n"
        f"===== LoRA {pair.checkpoint.path} ({pair.checkpoint.label}), multiplier {pair.multiplier}\n"
    )
    with log.open("a", encoding="utf-8") as handle:
        handle.write(text)
    return log.stat().st_size
