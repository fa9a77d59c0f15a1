"""Loss curves of a run against global step: training loss and evaluation loss, for `fplora plot`.

Training loss, from the best source there is:
1. musubi-tuner's TensorBoard logs (`loss/current`, the raw loss of each step), read with
   `curves.tfevents` (no tensorboard dependency). Each event file belongs to the segment whose start
   and end (from the manifest) hold its first event, which gives the global step (musubi-tuner
   counts each resumed segment from 0) and keeps other versions' runs in the same log folder out;
2. else the console log fplora keeps of each segment: musubi-tuner's progress bar shows only its
   moving average (`avr_loss`), which is what is drawn then, and said in the legend;
3. else the manifest's per-step losses (the same average, for logs that were moved away).
Evaluation loss comes from the run's eval.json (`runs.evaluation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fplora.curves.tfevents import EVENT_GLOB, read_scalars
from fplora.musubi.names import TRAIN_STEP_RE
from fplora.problems import Problem, note
from fplora.runs.catalogue import Catalogue
from fplora.runs.manifest import Segment, UnreadableManifest
from fplora.spec.models import Spec

TB_TAG = "loss/current"
RAW, AVERAGE = "loss (TensorBoard)", "avr_loss (console)"
SLACK_S = 120.0  # an event file's first event may follow the recorded end by a flush


@dataclass
class Series:
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)


@dataclass
class Curves:
    """One run's curves, named for the legend (its version)."""

    name: str
    train: Series
    train_source: str  # RAW, AVERAGE, or "" when there is none
    eval: Series  # trained checkpoints, by global step
    untrained: float | None = None
    best: tuple[int, float] | None = None
    notes: list[Problem] = field(default_factory=list)


def ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the start is not pulled
    to 0; non-finite values are skipped (they keep the last average)."""
    out: list[float] = []
    last, count = 0.0, 0
    for value in values:
        if math.isfinite(value):
            last = last * weight + (1 - weight) * value
            count += 1
        out.append(last / (1 - weight**count) if count else math.nan)
    return out


def _time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _logging_dir(spec: Spec) -> Path:
    logging = spec.train.logging
    return logging.logging_dir or spec.train.output_dir / "logs"


def _merge(points: dict[int, float], new: dict[int, float]) -> None:
    points.update(new)  # a later segment over the same steps is the newer line of training


def _tensorboard(spec: Spec, segments: list[Segment]) -> dict[int, float]:
    folder = _logging_dir(spec)
    if not folder.is_dir():
        return {}
    windows = [(s, _time(s.started), _time(s.ended)) for s in segments]
    points: dict[int, float] = {}
    for path in sorted(folder.rglob(EVENT_GLOB)):
        scalars = read_scalars(path, {TB_TAG})
        if not scalars:
            continue
        first = min(s.wall_time for s in scalars)
        # the newest segment started before the file's first event, if it had not ended by then
        started = [(start, seg, end) for seg, start, end in windows if start is not None and start <= first]
        _, owner, end = max(started, key=lambda item: item[0], default=(None, None, None))
        if owner is not None and (end is None or first <= end + SLACK_S):
            _merge(points, {owner.step_offset + s.step: s.value for s in scalars})
    return points


def _console(segments: list[Segment]) -> dict[int, float]:
    points: dict[int, float] = {}
    for segment in segments:
        if not segment.log:
            continue
        try:
            text = Path(segment.log).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        found: dict[int, float] = {}
        for match in TRAIN_STEP_RE.finditer(text):
            step, loss = int(match.group(1)), float(match.group(3))
            if math.isfinite(loss) or step not in found:
                found[step] = loss
        _merge(points, {segment.step_offset + step: loss for step, loss in found.items()})
    return points


def _manifest(segments: list[Segment]) -> dict[int, float]:
    points: dict[int, float] = {}
    for segment in segments:
        _merge(points, {segment.step_offset + i + 1: loss for i, loss in enumerate(segment.losses)})
    return points


def _series(points: dict[int, float]) -> Series:
    steps = sorted(points)
    return Series(steps, [points[s] for s in steps])


def curves_of(spec: Spec) -> Curves:
    """The run's training and evaluation curves (empty series where there is nothing yet)."""
    run = Catalogue.of(spec)
    notes: list[Problem] = []
    try:
        segments = run.segments
    except UnreadableManifest as error:
        notes += error.problems
        segments = []
    train, source = _tensorboard(spec, segments), RAW
    if not train:
        train, source = _console(segments) or _manifest(segments), AVERAGE
    if not train:
        source = ""
        notes.append(note(f"{spec.version}: no training loss found (no manifest, log or TensorBoard events)"))
    scores = run.scores
    evals = Series()
    untrained = None
    best = None
    if scores is not None:
        for point in scores.sorted_points():
            if point.lora is None:
                untrained = point.loss
            elif point.step is not None:
                evals.steps.append(point.step)
                evals.values.append(point.loss)
        chosen = scores.best()
        if chosen is not None and chosen.step is not None:
            best = (chosen.step, chosen.loss)
    return Curves(spec.version, _series(train), source, evals, untrained, best, notes)
