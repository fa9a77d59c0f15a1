"""`fplora train`: one training segment, resumed or new, with its manifest, log and lock."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fplora import __version__, process
from fplora.datasets import caches
from fplora.datasets.records import RecordCache
from fplora.jobs import Job, timestamp
from fplora.musubi import schema
from fplora.musubi.names import STATE_STEP_SUFFIX, TRAIN_STEP_RE
from fplora.problems import Problem, UserError, display_path
from fplora.render import commands
from fplora.runs.checkpoints import Checkpoint, expected, find, resolve, run_files
from fplora.runs.lock import lock_path, locked
from fplora.runs.manifest import Manifest, Segment, foreign_run_note, now
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


def _note_branch(job: Job, state: Checkpoint) -> None:
    """Say so when a resume starts a second line of training over steps the run already has."""
    spec = job.plan.spec
    if state.step is None:
        return
    later = [
        found.step
        for found in find(spec.train.output_dir, spec.output_name)
        if found.step is not None and found.step > state.step
    ]
    if later:
        job.console.print(
            f"[yellow]note: the run already reached global step {max(later)}; resuming from step"
            f" {state.step} trains steps {state.step + 1}–{max(later)} again in a new segment, and"
            f" stepN then names the new segment's files (the older ones stay, reachable by path)[/]",
            highlight=False,
        )


# Settings a state cannot be loaded with once changed: the network's tensors and the optimizer's
# state are shaped by them, and musubi-tuner finds out in load_state, after loading the models.
_STATE_SHAPING = ("train.network.module", "train.network.dim", "train.network.args", "train.optimizer.type")
# Settings a resume is expected to change.
_RESUME_CHANGES = ("train.max_train_steps",)
_COMPARED = ("train", "data", "one_frame", "musubi")  # what a state's training depends on


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _compare_settings(job: Job, manifest: Manifest, index: int) -> None:
    """Refuse a resume whose network or optimizer no longer fits the state; note other changes."""
    spec = job.plan.spec
    segment = manifest.segments[index]
    then = segment.spec_resolved or (manifest.spec_resolved if index == 0 else {})
    if not then:
        return  # a manifest from before per-segment settings: nothing to compare with
    dump = spec.model_dump(mode="json", by_alias=True)
    sections = [name for name in _COMPARED if name in then]
    before = _flatten({name: then[name] for name in sections})
    now_ = _flatten({name: dump.get(name) for name in sections})
    changed = [
        key
        for key in sorted(set(before) | set(now_))
        if before.get(key) != now_.get(key) and not key.startswith(_RESUME_CHANGES)
    ]
    fatal = [key for key in changed if key.startswith(_STATE_SHAPING)]
    if fatal:
        raise UserError(
            [
                spec.problem(
                    tuple(key.split(".")),
                    f"the state was saved with {before.get(key)!r}, the spec now says {now_.get(key)!r}:"
                    " the state cannot be loaded with it",
                    "resume with the settings it was saved with, or start a new version (a new spec file)",
                )
                for key in fatal
            ]
        )
    if changed:
        shown = ", ".join(f"{key} {before.get(key)!r} → {now_.get(key)!r}" for key in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        job.console.print(
            f"[yellow]note: the spec changed since the state was saved: {shown}{more}[/]", highlight=False
        )


def _resume_point(job: Job, manifest: Manifest | None, which: str) -> tuple[Path, int]:
    """The state to resume from and the global step it holds."""
    spec = job.plan.spec
    out, name = spec.train.output_dir, spec.output_name
    try:
        state = resolve(out, name, which, "state")
    except UserError:
        # a dry run before training shows the command with the state folder that step will have
        future = expected(out, name, which, "state") if job.dry_run else None
        if future is None or future.step is None:
            raise
        job.console.print(f"dry run: {display_path(future.path)} does not exist yet", highlight=False)
        return future.path, future.step
    if state.path.exists() and not state.path.is_dir():
        raise UserError(
            Problem(
                display_path(state.path),
                None,
                "",
                "is a file, not a training state (musubi-tuner saves states as -state folders)",
                "resume from a -state folder, latest or stepN; `fplora runs` lists the states",
            )
        )
    if state.segment < 0:
        job.console.print(
            f"[yellow]note: {display_path(state.path)} is not a state of {spec.output_name}; its weights and"
            " optimizer start this run (a warm start)[/]",
            highlight=False,
        )
    _note_branch(job, state)
    step = state.step
    if step is None:
        match = STATE_STEP_SUFFIX.search(state.path.name)
        if match is None:
            raise UserError(
                Problem(
                    display_path(state.path),
                    None,
                    "",
                    "cannot tell which global step this state holds",
                    "resume by step (stepN) or latest, or use a -stepNNNNNNNN-state folder",
                )
            )
        step = int(match.group(1))
    if manifest and 0 <= state.segment < len(manifest.segments):
        _compare_settings(job, manifest, state.segment)
        before = manifest.segments[state.segment].num_processes
        if before != spec.launch.num_processes:
            raise UserError(
                Problem(
                    display_path(spec.path),
                    None,
                    "launch.num_processes",
                    f"the state was saved with {before} process(es), this run uses"
                    f" {spec.launch.num_processes}",
                    "resume with the same number of GPUs (DDP states do not load across process counts)",
                )
            )
    return state.path, step


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
        resume_path, offset = _resume_point(job, manifest, resume)
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
