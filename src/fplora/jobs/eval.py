"""`fplora eval`: the training loss of each checkpoint on the evaluation split, in one worker.

Which step is best? musubi-tuner has no validation loss, and picking by eye costs minutes of
inference per checkpoint. The evaluation worker (`fplora/worker/eval.py`, run in the musubi-tuner
Python) loads the DiT once and scores each checkpoint on the split's cached records at fixed noise
levels with fixed noise. This module decides which checkpoints to score (those already scored with
the same setup and the same file are skipped unless `redo`), writes the worker's plan, turns its
events into progress, and keeps the scores in `<output_name>.eval.json` with a table on stdout.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from fplora import process
from fplora.atomic import write_atomic
from fplora.datasets import caches, split
from fplora.datasets.records import RecordCache
from fplora.jobs.cache import run_cache
from fplora.jobs.context import Job, log_path, log_tail, timestamp, worker_progress
from fplora.jobs.rehearse import gate
from fplora.jobs.tracking import log_eval
from fplora.problems import Problem, UserError, display_path, note, plural
from fplora.protocol import eval as protocol
from fplora.render import commands
from fplora.runs import evaluation
from fplora.runs.checkpoints import Checkpoint
from fplora.runs.evaluation import UNTRAINED, Band, EvalFile, Point
from fplora.runs.loras import choose_loras, same_lora
from fplora.runs.manifest import Segment, now
from fplora.runtime import worker_commit
from fplora.spec.models import Spec

ALL = "all"


def setup_of(spec: Spec, prints: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What an evaluation loss depends on besides the LoRA: scores under another setup do not
    compare (`runs.evaluation.merge` drops them)."""
    index = spec.eval_index
    assert spec.eval is not None and index is not None
    train = spec.train
    setup = {
        "timesteps": list(spec.eval.timesteps),
        "noise_seed": spec.eval.noise_seed,
        "batch_size": spec.eval.batch_size,
        "compile": compiles(spec),
        "records": prints,
        "cache": caches.stamp_for(spec, index),
        "dit": str(spec.models.dit),
        "fp8_base": train.fp8_base,
        "fp8_scaled": train.fp8_scaled,
        "mixed_precision": train.mixed_precision,
        "weighting_scheme": spec.musubi.config.get("weighting_scheme"),
    }
    return json.loads(json.dumps(setup))  # as eval.json gives it back (tuples become lists)


def compiles(spec: Spec) -> bool:
    """Whether the worker compiles the DiT: `eval.compile`, else as training does (`train.compile`)."""
    assert spec.eval is not None
    return spec.eval_compiles


def words_for(words: list[str], checkpoints: list[Checkpoint]) -> list[str]:
    """`all` → every step LoRA, and the final one (a twin of the last step is scored once)."""
    out: list[str] = []
    for word in words:
        if word != ALL:
            out.append(word)
            continue
        loras = [c for c in checkpoints if c.kind == "lora"]
        if any(not c.final for c in loras):
            out.append("every:1")
        if any(c.final for c in loras):
            out.append("final")
    return out


def _spec_problem(spec: Spec) -> UserError:
    return UserError(
        spec.problem(
            (),
            "has no evaluation split: nothing to score checkpoints on",
            "add `eval: {fraction: 0.1}` (or `records: [...]` or `jsonl: ...`), then run `fplora cache`",
        )
    )


@dataclass
class _Eval:
    """The running evaluation: checkpoints by id, and what the worker said."""

    job: Job
    checkpoints: dict[str, tuple[Checkpoint | None, dict[str, Any] | None]]
    timesteps: list[float]
    points: list[Point] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    error: str = ""
    progress: Progress | None = None
    task: Any = None
    ready_s: float | None = None

    def on_line(self, line: str) -> None:
        event = protocol.parse_event(line)
        if event is None:
            return
        kind = event.get("event")
        if kind == "phase" and self.progress is not None:
            self.progress.update(self.task, description=str(event.get("phase", "")))
        elif kind == "ready":
            self.ready_s = float(event.get("seconds") or 0)
            self.job.say(
                f"DiT loaded and {event.get('records')} evaluation records read in {self.ready_s:.0f} s"
            )
        elif kind == "checkpoint_started" and self.progress is not None:
            self.progress.update(self.task, description=f"scoring {event.get('label')}")
        elif kind in ("checkpoint_done", "checkpoint_failed") and event.get("id") in self.checkpoints:
            self._end(event)
        elif kind == "error":
            self.error = str(event.get("error", ""))

    def _end(self, event: dict[str, Any]) -> None:
        checkpoint, identity = self.checkpoints[event["id"]]
        label = checkpoint.label if checkpoint is not None else UNTRAINED
        if self.progress is not None:
            self.progress.advance(self.task)
        if event["event"] == "checkpoint_failed":
            self.failed.append(label)
            self.job.say(f"{label}: failed: {event.get('error')}", "red")
            return
        bands = [Band(t=float(b["t"]), loss=float(b["loss"])) for b in event.get("bands") or []]
        seconds = event.get("seconds")
        self.points.append(
            Point(
                label=label,
                step=0 if checkpoint is None else checkpoint.step,
                lora=None if checkpoint is None else str(checkpoint.path),
                weights=identity,
                loss=float(event["loss"]),
                bands=bands,
                seconds=float(seconds) if isinstance(seconds, int | float) else None,
                evaluated=now(),
            )
        )
        took = f" ({float(seconds):.1f} s)" if isinstance(seconds, int | float) else ""
        self.job.say(f"{label}: loss {float(event['loss']):.5f}{took}")


def _already(
    old: EvalFile | None, setup: dict[str, Any], checkpoint: Checkpoint | None, identity: Any
) -> bool:
    """Scored before with the same setup and the same weights (untrained: the same setup)."""
    if old is None or old.setup != setup:
        return False
    for point in old.points:
        if checkpoint is None and point.lora is None:
            return True
        if checkpoint is not None and point.weights and identity and same_lora(point.weights, identity):
            return point.step == checkpoint.step
    return False


def print_table(data: EvalFile, title: str) -> None:
    """The scores on stdout: step, checkpoint, loss (the best marked), loss per noise level."""
    table = Table(title=title)
    for column in ("step", "checkpoint", "loss", *(f"t={t:g}" for t in data.setup.get("timesteps", [])), "s"):
        table.add_column(column, justify="right" if column != "checkpoint" else "left")
    for row in evaluation.table_rows(data, data.best()):
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console.width = 160
    console.print(table)


_SPLIT_KEYS = ("dataset", "records", "fraction", "seed", "jsonl")
"""What decides which records an evaluation split holds out of training."""


def _split_trained_on(spec: Spec, segments: list[Segment], loras: list[Checkpoint]) -> Problem | None:
    """A split written after (some of) the training of the checkpoints to score: a segment up to the
    last of them ran without it, or with another, so it trained on records the split now holds out.
    Their loss then shows fit, and `--lora best` would pick the most overfitted checkpoint: an error,
    a warning where `eval.allow_training_records` says to score anyway. A separate JSONL holds
    nothing out of training: `check` judges its records against the training ones."""
    evaluation = spec.eval
    if evaluation is None or evaluation.jsonl is not None or not loras:
        return None
    now = spec.model_dump(mode="json", by_alias=True)["eval"]
    last = max(checkpoint.segment for checkpoint in loras)
    for segment in segments[: last + 1]:
        if not segment.spec_resolved:
            continue  # a segment fplora did not run: nothing to compare with
        then = segment.spec_resolved.get("eval") or {}
        if all(then.get(key) == now.get(key) for key in _SPLIT_KEYS):
            continue
        how = "without this evaluation split" if not then else "with another evaluation split"
        message = (
            f"{segment.output_name} trained {how}, so the checkpoints to score were trained on the"
            " records it holds out: their loss shows fit, not how the LoRA does on records it never saw"
        )
        if evaluation.allow_training_records:
            return spec.problem(("eval",), message, "", severity="warning")
        return spec.problem(
            ("eval",),
            message,
            "train a new version with this eval: from the start, or set eval.allow_training_records: true"
            " to score them anyway",
        )
    return None


def run_eval(
    job: Job, *, loras: list[str], no_rehearse: bool, untrained: bool = True, redo: bool = False
) -> int:
    """Score the chosen checkpoints (and the untrained network) on the evaluation split. A spec
    without a split, caches not made and a `--lora` that names nothing are refused before the
    rehearsal (`jobs.rehearse.gate`), which would spend half a minute first."""
    spec = job.plan.spec
    index = spec.eval_index
    if spec.eval is None or index is None:
        raise _spec_problem(spec)
    entries = split.entry_records(spec, job.plan.records or RecordCache(spec))
    scored = entries(index)
    out, name = spec.train.output_dir, spec.output_name
    # the store holds every file (a new version of the same split): linking computes nothing
    linked = not job.dry_run and caches.only_links(spec, entries, spec.cache_entries)
    if linked and (code := run_cache(job)):
        return code
    if not job.dry_run and (stale := caches.problems(spec, entries, entries=[index], train_too=False)):
        raise UserError(stale)
    words = words_for(loras, job.run.checkpoints)
    choice = choose_loras(spec, words, dry_run=job.dry_run, run=job.run) if words else None
    job.report(choice.notes if choice else [])
    if choice and (seen := _split_trained_on(spec, job.run.segments, choice.loras)):
        if seen.severity == "error":
            raise UserError(seen)
        job.report([seen])
    if gate(job, skip=no_rehearse):
        return 1
    setup = setup_of(spec, caches.fingerprints(scored))
    old = job.run.scores
    todo: list[tuple[Checkpoint | None, dict[str, Any] | None]] = []
    if untrained:
        todo.append((None, None))
    for checkpoint in choice.loras if choice else []:
        todo.append((checkpoint, choice.identities.get(checkpoint.path) if choice else None))
    skipped = [] if redo else [item for item in todo if _already(old, setup, *item)]
    todo = [item for item in todo if item not in skipped]
    if skipped:
        job.report(
            [
                note(
                    f"{plural(len(skipped), 'checkpoint')} already scored with this setup: skipped"
                    " (--redo scores them again)"
                )
            ]
        )
    folder = spec.render_dir / "logs"
    stamp = timestamp()
    plan_file = folder / f"eval-{stamp}.json"
    argv = commands.eval_worker(spec, job.python, plan_file)
    if not todo:
        job.say("nothing to score")
        if old is not None and old.points:
            print_table(old, f"{name}: evaluation loss on {plural(len(scored.items), 'record')}")
        return 0
    if job.dry_run:
        job.show(argv)
        job.say(
            f"dry run: the plan {display_path(plan_file)} is not written;"
            f" it would score {plural(len(todo), 'checkpoint')}"
        )
        return 0
    ids = {f"k{i}": item for i, item in enumerate(todo)}
    plan = {
        "protocol": protocol.PROTOCOL,
        "config_file": str(job.plan.paths.config),
        "dataset_config": str(job.plan.paths.eval_dataset),
        "timesteps": list(spec.eval.timesteps),
        "noise_seed": spec.eval.noise_seed,
        "compile": compiles(spec),
        "checkpoints": [
            {
                "id": key,
                "label": UNTRAINED if checkpoint is None else checkpoint.label,
                "lora": None if checkpoint is None else str(checkpoint.path),
            }
            for key, (checkpoint, _) in ids.items()
        ],
    }
    job.report(worker_commit(job.python, "evaluation"))
    write_atomic(plan_file, json.dumps(plan, indent=1) + "\n")
    log = log_path(folder, "eval")
    job.show(argv)
    job.say(
        f"{plural(len(todo), 'checkpoint')} × {plural(len(scored.items), 'record')}"
        f" × {plural(len(spec.eval.timesteps), 'noise level')};"
        f" log: {display_path(log)}"
    )
    run = _Eval(job, ids, list(spec.eval.timesteps))
    started = time.monotonic()
    with (
        worker_progress(job, "starting the evaluation worker", len(todo)) as (run.progress, run.task),
        open(os.devnull, "wb") as quiet,
    ):
        result = process.run(argv, log=log, on_line=run.on_line, echo=quiet)
    new = EvalFile(spec=str(spec.path), output_name=name, setup=setup, points=run.points)
    merged, notes = evaluation.merge(old, new)
    job.report(notes)
    if run.points:
        path = evaluation.save(out, name, merged)
        job.say(f"scores saved: {display_path(path)}")
        print_table(merged, f"{name}: evaluation loss on {plural(len(scored.items), 'record')}")
        if spec.train.logging.to_wandb:
            log_eval(job, run.points, merged.best())
    missing = len(todo) - len(run.points) - len(run.failed)
    if missing:
        why = run.error or f"the worker stopped (exit {result.returncode})"
        job.say(
            f"{plural(missing, 'checkpoint')} not scored: {why}; log: {display_path(log)}",
            "red",
        )
        if not run.error:
            for line in log_tail(log):
                job.say(f"  {line}", "red")
    elapsed = time.monotonic() - started
    per = [p.seconds for p in run.points if p.seconds is not None]
    if per and compiles(spec) and len(per) > 1:
        # the first checkpoint's forward passes compiled the DiT's blocks: not a checkpoint's cost
        job.say(
            f"{len(run.points)} scored in {elapsed:.0f} s ({per[0]:.1f} s for the first, with compiling;"
            f" {sum(per[1:]) / len(per[1:]):.1f} s per checkpoint after it)"
        )
    elif per:
        job.say(
            f"{len(run.points)} scored in {elapsed:.0f} s"
            f" ({sum(per) / len(per):.1f} s per checkpoint after the load)"
        )
    best = merged.best()
    if best is not None:
        job.say(f"best: {best.label} (loss {best.loss:.5f}); use it with --lora best", "green")
    if result.interrupted:
        return 130
    return 1 if run.failed or missing or result.returncode != 0 else 0
