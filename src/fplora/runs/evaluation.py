"""A run's evaluation losses (`<output_name>.eval.json` beside its checkpoints), and which is best.

`fplora eval` scores checkpoints on the spec's evaluation split; each score is kept here by global
step, so that `fplora runs`, `fplora plot` and `--lora best` read one file. Losses only compare when
they were computed the same way: the same records (by cache fingerprint), noise levels, noise seed
and base model. That is the file's `setup`; scores made under another setup are dropped when new
ones are added (with a note), never mixed into one table.

What the evaluation worker (`fplora/worker/eval.py`) reads and prints is `protocol/eval.py`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fplora.atomic import write_atomic
from fplora.problems import Problem, UserError, display_path, note

FORMAT = 1
UNTRAINED = "untrained"
"""The checkpoint word for the network before training (the DiT alone): the baseline every
checkpoint should beat."""


class Band(BaseModel):
    t: float
    loss: float


class Point(BaseModel):
    """One checkpoint's score."""

    model_config = ConfigDict(extra="ignore")

    label: str  # step1200, final, untrained, or a file name
    step: int | None  # global step; 0 for untrained; None for a file of unknown step
    lora: str | None  # the LoRA file; None for untrained
    weights: dict[str, Any] | None = None  # `runs.loras.lora_identity`: the same file, unchanged
    loss: float
    bands: list[Band]
    seconds: float | None = None
    evaluated: str = ""


class EvalFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: int = FORMAT
    spec: str = ""
    output_name: str = ""
    setup: dict[str, Any] = Field(default_factory=dict)
    points: list[Point] = Field(default_factory=list)

    def sorted_points(self) -> list[Point]:
        """By global step (untrained first, unknown steps last)."""
        return sorted(self.points, key=lambda p: (p.step is None, p.step or 0, p.label))

    def best(self) -> Point | None:
        """The trained checkpoint with the lowest loss; the earlier step on a tie (fewer steps,
        less overfitting for the same score)."""
        trained = [p for p in self.points if p.lora is not None and math.isfinite(p.loss)]
        return (
            min(trained, key=lambda p: (p.loss, p.step if p.step is not None else math.inf))
            if trained
            else None
        )


def path_for(output_dir: Path, output_name: str) -> Path:
    return output_dir / f"{output_name}.eval.json"


def load(output_dir: Path, output_name: str) -> EvalFile | None:
    """The run's evaluation file; None when there is none; UserError when it cannot be read."""
    path = path_for(output_dir, output_name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UserError(Problem(display_path(path), None, "", f"cannot be read: {error.strerror}")) from None
    try:
        return EvalFile.model_validate(json.loads(text))
    except (ValueError, ValidationError) as error:
        first = str(error).splitlines()[0]
        raise UserError(
            Problem(
                display_path(path),
                None,
                "",
                f"is not an evaluation file fplora can read ({first})",
                "move it away and run `fplora eval` again",
            )
        ) from None


def save(output_dir: Path, output_name: str, data: EvalFile) -> Path:
    path = path_for(output_dir, output_name)
    write_atomic(path, data.model_dump_json(indent=1) + "\n")
    return path


def merge(old: EvalFile | None, new: EvalFile) -> tuple[EvalFile, list[Problem]]:
    """`new`'s points added to `old`'s: a checkpoint scored again replaces its old score (by LoRA
    file, or label for untrained); another setup drops every old score, with a note."""
    if old is None or not old.points:
        return new, []
    notes: list[Problem] = []
    kept = old.points
    if old.setup != new.setup:
        changed = sorted(k for k in set(old.setup) | set(new.setup) if old.setup.get(k) != new.setup.get(k))
        notes.append(
            note(
                f"the evaluation setup changed since the {len(old.points)} earlier scores"
                f" ({', '.join(changed)}): they do not compare with the new ones and are dropped"
            )
        )
        kept = []
    fresh = {(p.lora, p.label if p.lora is None else "") for p in new.points}
    kept = [p for p in kept if (p.lora, p.label if p.lora is None else "") not in fresh]
    return new.model_copy(update={"points": [*kept, *new.points]}), notes


def no_evaluation(output_dir: Path, output_name: str, why: str) -> UserError:
    """The error for `--lora best` when there is nothing to choose from."""
    return UserError(
        Problem(
            display_path(path_for(output_dir, output_name)),
            None,
            "--lora best",
            why,
            "run `fplora eval` first (the spec needs an `eval:` split), or give stepN",
        )
    )


def table_rows(data: EvalFile, best: Point | None = None) -> list[list[str]]:
    """[step, label, loss, loss per band..., seconds] per point, for the printed table."""
    rows = []
    for point in data.sorted_points():
        mark = " ←" if best is not None and point is best else ""
        step = "" if point.step is None else str(point.step)
        bands = [f"{b.loss:.5f}" for b in point.bands]
        took = f"{point.seconds:.1f}" if point.seconds is not None else ""
        rows.append([step, point.label, f"{point.loss:.5f}{mark}", *bands, took])
    return rows
