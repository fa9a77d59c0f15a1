"""Which LoRA files `fplora infer` runs, and whether each is one generate can load.

`--lora` words resolve to checkpoints (`runs/checkpoints.py`); this module checks them before ~95 s
of model loading per process: a `-state` folder, another kind of file, a damaged or half-written save
(a training may still be writing the newest), and two words for the same weights, which run once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fplora.musubi.names import LORA_WEIGHTS_HASH_KEY, lora_of_state
from fplora.problems import Problem, UserError, display_path, note, plural
from fplora.runs.catalogue import Catalogue
from fplora.runs.checkpoints import Checkpoint, parse_step
from fplora.runs.lora_ranges import expand
from fplora.safetensors import MAX_HEADER, safetensors_problem
from fplora.spec.models import Spec


def describe(checkpoint: Checkpoint) -> str:
    word = "final" if checkpoint.final else ""
    label = ", ".join(w for w in (checkpoint.label if checkpoint.step is not None else "", word) if w)
    return f"{display_path(checkpoint.path)} ({label})" if label else display_path(checkpoint.path)


@dataclass(frozen=True)
class Training:
    """A training of this spec's run that holds its lock now."""

    pid: int
    lock: Path


def running_training(run: Catalogue) -> Training | None:
    pid = run.training_pid
    return Training(pid, run.lock) if pid is not None else None


def lora_problem(
    checkpoint: Checkpoint,
    training: Training | None,
    run: Catalogue,
    *,
    content: bool = True,
) -> Problem | None:
    """Why `checkpoint` is not a LoRA file generate can load, found before ~95 s of model loading.

    `content=False` (dry runs, which check no model file) looks at the kind of file only."""
    path = checkpoint.path
    where = display_path(path)
    if path.is_dir():
        lora_name = lora_of_state(path.name)
        if lora_name is not None:
            lora = path.with_name(lora_name)
            resolved = path.resolve()
            state = next((c for c in run.checkpoints if c.path.resolve() == resolved), None)
            use = "use a LoRA .safetensors file"
            if lora.is_file():
                word = f"--lora {state.label}, " if state and state.step is not None else ""
                use = f"use the LoRA step file: {word}{display_path(lora)}"
            return Problem(where, None, "", "is a training state, not a LoRA", use)
        return Problem(where, None, "", "is a folder, not a LoRA file", "give a LoRA .safetensors file")
    if not path.is_file():
        return Problem(where, None, "", "is not a regular file", "give a LoRA .safetensors file")
    if path.suffix != ".safetensors":
        return Problem(where, None, "", "is not a .safetensors file", "give a LoRA .safetensors file")
    if not content:
        return None
    try:
        size = path.stat().st_size
        found = ("is empty", "download it again") if size == 0 else safetensors_problem(path, size)
    except OSError as error:
        return Problem(where, None, "", f"cannot be read ({error.strerror})", "check its permissions")
    if found is None:
        return None
    message, fix = found
    return Problem(where, None, "", message, _refit(checkpoint, training, fix))


def _refit(checkpoint: Checkpoint, training: Training | None, fix: str) -> str:
    """The fix for a damaged file of this run: it is being written, or take another checkpoint."""
    if checkpoint.segment < 0 or fix != "download it again":
        return fix
    if training:
        return f"training (pid {training.pid}) may still be writing it: wait for the save and run again"
    return "pick another checkpoint (fplora runs lists them)"


def never_saved(spec: Spec, lora: str, run: Catalogue | None = None) -> tuple[str, str] | None:
    """(why, fix) when `--lora stepN` names a step no training of this spec saves a LoRA at.

    Step LoRAs are saved every `save_every_n_steps` steps of a segment, so at global steps
    offset + k·every; the final LoRA at `max_train_steps`. A first run's offset is 0; a resumed
    segment's offset is its state's step, and the steps already saved show every offset in use.
    A step off all of them (step150 when saving every 100) will never exist, however long the
    training runs: said before a dry run prints a command for it, or a real one looks in vain."""
    step = parse_step(lora)
    every = spec.train.save_every_n_steps
    if step is None or not every or step == spec.train.max_train_steps:
        return None
    saved = [c.step for c in (run or Catalogue.of(spec)).checkpoints if c.step is not None]
    if any((step - at) % every == 0 for at in [0, *saved]):
        return None
    below, above = step - step % every, step - step % every + every
    nearest = f"step{below} or step{above}" if below else f"step{above}"
    return f"LoRAs are saved every {plural(every, 'step')} (train.save_every_n_steps)", f"use {nearest}"


def _checkpoint(spec: Spec, run: Catalogue, lora: str, *, dry_run: bool) -> tuple[Checkpoint, list[Problem]]:
    """The LoRA to use; a dry run before training shows the name the checkpoint will have."""
    try:
        chosen = run.resolve(lora, "lora")
    except UserError as error:
        never = never_saved(spec, lora, run)
        future = run.expected(lora, "lora") if dry_run else None
        if future is None:
            if never is None:
                raise
            said = error.problems[0]
            raise UserError(
                Problem(said.file, None, "", f"{said.message}, and there never will be: {never[0]}", never[1])
            ) from None
        if never is not None:
            why, fix = never
            return future, [
                Problem("command line", None, "--lora", f"{lora} will never exist: {why}", fix, "warning")
            ]
        return future, [note(f"dry run: {display_path(future.path)} does not exist yet")]
    notes = []
    if parse_step(lora) is not None:
        for other in run.same_step(chosen):
            notes.append(
                note(
                    f"{chosen.label} also exists in an older segment: {display_path(other.path)};"
                    f" using the newest, {display_path(chosen.path)} (give a path for the other)"
                )
            )
    return chosen, notes


@dataclass
class Choice:
    """The LoRAs an infer runs (each once), the identity of each that exists, and notes."""

    loras: list[Checkpoint]
    identities: dict[Path, dict[str, Any]]
    notes: list[Problem]


def choose_loras(
    spec: Spec, loras: list[str], *, dry_run: bool = False, run: Catalogue | None = None
) -> Choice:
    """Every LoRA asked for, resolved and checked before any process starts: a typo in the third is
    not found an hour into the first. Two words for the same file (`latest` and `step5000`), or two
    files with the same weights (`latest` and `final` at the last step), run once.

    Selections (`step3000..step5000`, `every:1000`, `last:3`: `runs/lora_ranges.py`) expand into
    the steps they select first. Refuses (UserError) a word that names nothing and a file generate
    could not load; a dry run checks only the kind of each file (it reads no model file). `run` is
    the command's catalogue of the spec's run (read here when not given)."""
    run = run or Catalogue.of(spec)
    found: dict[Path, Checkpoint] = {}
    words, notes = expand(loras, run.checkpoints, spec.output_name)
    for lora in words:
        checkpoint, said = _checkpoint(spec, run, lora, dry_run=dry_run)
        notes += said
        if dry_run and lora in ("best", "latest", "final"):  # what a dry run's reader cannot see
            notes.append(note(f"--lora {lora} is {describe(checkpoint)}"))
        found.setdefault(checkpoint.path, checkpoint)
    chosen = list(found.values())
    name = spec.output_name
    training = running_training(run)
    newest = run.newest_lora() if training else None
    if training and newest is not None and newest.path in found:
        notes.append(
            note(
                f"training of {name} is running (pid {training.pid}, {display_path(training.lock)}):"
                f" {describe(found[newest.path])} is its newest save and may be only half written"
            )
        )
    problems = [
        problem
        for checkpoint in chosen
        if checkpoint.path.exists()
        for problem in [lora_problem(checkpoint, training, run, content=not dry_run)]
        if problem
    ]
    if problems:
        raise UserError([*notes, *problems])
    identities = {c.path: lora_identity(c.path) for c in chosen if c.path.exists()}
    unique: list[Checkpoint] = []
    for checkpoint in chosen:
        mine = identities.get(checkpoint.path)
        twin = next(
            (u for u in unique if mine and u.path in identities and same_lora(identities[u.path], mine)),
            None,
        )
        if twin is None:
            unique.append(checkpoint)
        else:
            notes.append(
                note(f"{describe(checkpoint)} holds the same weights as {describe(twin)}: running it once")
            )
    return Choice(unique, identities, notes)


def lora_identity(path: Path) -> dict[str, Any]:
    """Path, size, mtime, musubi-tuner's hash of the weights, and a fingerprint (blake2b of the header
    and the last MiB) for files without that hash. The path is for messages: a moved or copied file
    is the same LoRA."""
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else 0
        raw = handle.read(length) if length <= MAX_HEADER else b""
        digest.update(head + raw)
        handle.seek(max(0, stat.st_size - (1 << 20)))
        digest.update(handle.read())
    try:
        metadata = json.loads(raw).get("__metadata__") or {}
    except (ValueError, AttributeError):
        metadata = {}
    weights = metadata.get(LORA_WEIGHTS_HASH_KEY) if isinstance(metadata, dict) else None
    return {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "weights": weights if isinstance(weights, str) else None,
        "fingerprint": digest.hexdigest(),
    }


def same_lora(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same weights: by musubi-tuner's hash where both files have one, else the same file content."""
    if a.get("weights") and b.get("weights"):
        return a["weights"] == b["weights"]
    return a.get("size") == b.get("size") and a.get("fingerprint") == b.get("fingerprint")
