"""`fplora train`: one training segment, resumed or new, with its manifest, log and lock."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from fplora import __version__, process
from fplora.datasets import caches
from fplora.datasets.records import RecordCache
from fplora.jobs import Job, timestamp
from fplora.musubi import schema
from fplora.musubi.names import TRAIN_STEP_RE
from fplora.problems import Problem, UserError, display_path
from fplora.render import commands
from fplora.runs.checkpoints import find, run_files
from fplora.runs.lock import lock_path, locked
from fplora.runs.manifest import Manifest, Segment, foreign_run_note, now
from fplora.runs.resume import resume_point
from fplora.runs.runpod import stop_pod
from fplora.runtime import gpu_problem


def _new_manifest(job: Job) -> Manifest:
    spec = job.plan.spec
    return Manifest(
        output_name=spec.output_name,
        spec=str(spec.path),
        spec_resolved=spec.model_dump(mode="json", by_alias=True),
        rendered={str(path): text for path, text in job.plan.files.items() if path.suffix != ".jsonl"},
        fplora_version=__version__,
        musubi_tuner={"commit": schema.pinned_commit(), "version": schema.pinned_version()},
    )


@dataclass
class Prepared:
    """A training segment decided and validated, nothing written or started yet."""

    manifest: Manifest
    index: int
    segment_name: str
    argv: list[str]
    offset: int
    remaining: int
    resume_path: Path | None
    stop_pod: str
    leftovers: list[Path] = field(default_factory=list)  # a failed start's manifest and logs


def _leftovers(out: Path, name: str) -> list[Path]:
    """Files of a run that never saved a checkpoint or state (it failed early): safe to set aside."""
    existing = run_files(out, name)
    if existing and not find(out, name):
        return existing
    return []


def prepare_train(job: Job, *, resume: str | None, stop_pod: str | None = None) -> Prepared:
    """Everything that can refuse a training, before any GPU work (`--cache` runs after this)."""
    spec, paths = job.plan.spec, job.plan.paths
    out, name = spec.train.output_dir, spec.output_name
    manifest = Manifest.load(out, name)
    leftovers: list[Path] = []
    if resume is None:
        leftovers = _leftovers(out, name)
        existing = run_files(out, name)
        if existing and not leftovers:
            raise UserError(
                Problem(
                    display_path(out),
                    None,
                    "",
                    f"already holds run {name} ({len(existing)} files, e.g. {existing[0].name})",
                    "continue it with --resume, or start a new version (a new spec file)",
                )
            )
        if leftovers:
            manifest = None  # the failed start is set aside, not continued
        resume_path, offset, index = None, 0, 0
    else:
        note = foreign_run_note(out, name, spec.path)
        if note:
            job.console.print(f"[yellow]{note}[/]", highlight=False)
        resume_path, offset = resume_point(job, manifest, resume)
        index = len(manifest.segments) if manifest else 1
    remaining = spec.train.max_train_steps - offset
    if remaining <= 0:
        raise UserError(
            Problem(
                display_path(spec.path),
                None,
                "train.max_train_steps",
                f"the state is at step {offset}, already at max_train_steps ({spec.train.max_train_steps})",
                "raise train.max_train_steps to train further",
            )
        )
    if manifest is None:
        manifest = _new_manifest(job)
        if index:
            # resuming a run trained without fplora: record it as segment 0 (what `segments_of`
            # assumes for it), or its checkpoints would vanish from step resolution after this one
            manifest.segments.append(Segment(name, 0, None, spec.launch.num_processes, [], "", ""))
    segment_name = manifest.segment_name(index)
    argv = commands.train(
        spec,
        paths,
        job.python,
        output_name=segment_name if index else None,
        resume=resume_path,
        max_train_steps=remaining if index else None,
    )
    when = stop_pod or spec.runpod.stop_pod
    return Prepared(manifest, index, segment_name, argv, offset, remaining, resume_path, when, leftovers)


def run_train(job: Job, *, resume: str | None, stop_pod: str | None = None) -> int:
    prepared = prepare_train(job, resume=resume, stop_pod=stop_pod)
    if job.dry_run:
        job.show(prepared.argv)
        return 0
    return execute_train(job, prepared)


def _set_aside(job: Job, leftovers: list[Path]) -> None:
    stamp = timestamp()
    for path in leftovers:
        target = path.with_name(f"{path.name}.failed-{stamp}")
        path.rename(target)
        job.console.print(f"set aside {display_path(path)} of a start that saved nothing → {target.name}")


def execute_train(job: Job, prepared: Prepared) -> int:
    """Run a prepared segment: caches checked, lock held, manifest and log kept, pod stopped."""
    spec = job.plan.spec
    out, name = spec.train.output_dir, spec.output_name
    manifest, index, segment_name, argv = (
        prepared.manifest,
        prepared.index,
        prepared.segment_name,
        prepared.argv,
    )
    offset, remaining, resume_path, when = (
        prepared.offset,
        prepared.remaining,
        prepared.resume_path,
        prepared.stop_pod,
    )
    problems = caches.problems(spec, job.plan.records or RecordCache(spec))
    gpus = gpu_problem(spec)
    problems += [gpus] if gpus else []
    if problems:
        raise UserError(problems)
    out.mkdir(parents=True, exist_ok=True)
    with locked(lock_path(out, name)) as lock:
        if prepared.leftovers:
            _set_aside(job, prepared.leftovers)
        clash = [p for p in run_files(out, segment_name) if p.name.startswith(segment_name)]
        if index and clash:
            raise UserError(
                Problem(
                    display_path(clash[0]),
                    None,
                    "",
                    "exists already; not overwriting it",
                    "remove it by hand",
                )
            )
        log = out / f"{segment_name}.log"
        segment = Segment(
            output_name=segment_name,
            step_offset=offset,
            resumed_from=str(resume_path) if resume_path else None,
            num_processes=spec.launch.num_processes,
            command=argv,
            log=str(log),
            started=now(),
            spec_resolved=spec.model_dump(mode="json", by_alias=True),
            rendered={str(p): t for p, t in job.plan.files.items() if p.suffix != ".jsonl"},
        )
        manifest.segments.append(segment)
        manifest.save(out)
        if offset:
            job.console.print(f"resuming at global step {offset} as {segment_name}", highlight=False)
            if spec.train.optimizer.lr_scheduler not in (None, "constant", "constant_with_warmup"):
                job.console.print(
                    f"[yellow]warning: musubi-tuner rebuilds the {spec.train.optimizer.lr_scheduler} schedule"
                    f" for the {remaining} remaining steps and then restores the state's step count:"
                    " the learning rate will not follow the original curve[/]"
                )
        job.show(argv)
        losses: dict[int, float] = {}

        def on_line(line: str) -> None:
            for match in TRAIN_STEP_RE.finditer(line):
                step, loss = int(match.group(1)), float(match.group(3))
                segment.last_step = max(segment.last_step or 0, step)
                if math.isfinite(loss) or step not in losses:
                    losses[step] = loss

        result = process.run(argv, log=log, on_line=on_line, on_start=lock.add)
        segment.ended = now()
        segment.exit_code = result.returncode
        segment.interrupted = result.interrupted
        segment.losses = [losses[s] for s in sorted(losses)]
        if result.returncode == 0 and segment.last_step is None:
            segment.last_step = remaining
        manifest.save(out)
    state = "interrupted" if result.interrupted else ("finished" if result.returncode == 0 else "failed")
    end = f" at global step {segment.end_step}" if segment.end_step is not None else ""
    job.console.print(
        f"training {state}{end} (exit {result.returncode}); log: {display_path(log)}", highlight=False
    )
    stop_pod(job, when, result.returncode)
    return result.returncode
