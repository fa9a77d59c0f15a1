"""`fplora train`: one training segment, resumed or new, with its manifest, log and lock.

`train` is the whole verb: decide the segment (`prepare`, which refuses before any GPU work), fill
the caches first when asked (`--cache`), and run it (`execute`). The RunPod pod is stopped around
the whole verb (`jobs.runpod.stopping_pod`), also when fplora refused before training started.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from fplora import __version__, process
from fplora.atomic import write_atomic
from fplora.datasets import caches, split
from fplora.datasets.records import RecordCache
from fplora.jobs.cache import run_cache
from fplora.jobs.context import Job, timestamp
from fplora.jobs.rehearse import gate
from fplora.jobs.resume import resume_point
from fplora.jobs.tracking import wandb_login_problem
from fplora.musubi import schema
from fplora.musubi.names import TRAIN_STEP_RE
from fplora.problems import Problem, UserError, display_path, plural
from fplora.render import commands, tracker
from fplora.render import files as render_files
from fplora.runs.catalogue import Catalogue
from fplora.runs.checkpoints import run_files
from fplora.runs.lock import lock_path, locked
from fplora.runs.manifest import Manifest, Segment, now
from fplora.runtime import gpu_problem
from fplora.spec.models import Spec


def _new_manifest(job: Job) -> Manifest:
    spec = job.plan.spec
    return Manifest(
        output_name=spec.output_name,
        spec=str(spec.path),
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
    leftovers: list[Path] = field(default_factory=list)  # a failed start's manifest and logs
    tracker: tuple[Path, str] | None = None  # a resumed segment's wandb run file, written at its start


def _leftovers(run: Catalogue) -> list[Path]:
    """Files of a run that never saved a checkpoint or state (it failed early): safe to set aside."""
    existing = run_files(run.output_dir, run.output_name)
    if existing and not run.checkpoints:
        return existing
    return []


CONTINUE_FIX = "continue it with --resume, or start a new version (a new spec file)"


def _finished_fix(spec: Spec, run: Catalogue) -> str | None:
    """For a run whose newest state is at max_train_steps: `--resume` alone would be refused next
    (nothing left to train), so say to raise the steps first. None for a run that can go on."""
    try:
        newest = run.resolve("latest", "state")
    except UserError:
        return None
    if newest.step is None or newest.step < spec.train.max_train_steps:
        return None
    return (
        f"it finished at step {newest.step} (train.max_train_steps): to train further, raise"
        f" train.max_train_steps and run `fplora train {display_path(spec.path)} --resume latest`; or"
        " start a new version (a new spec file)"
    )


def prepare_train(job: Job, *, resume: str | None) -> Prepared:
    """Everything that can refuse a training, before any GPU work (`--cache` runs after this)."""
    spec, paths = job.plan.spec, job.plan.paths
    out, name = spec.train.output_dir, spec.output_name
    run = job.run
    manifest = run.manifest
    leftovers: list[Path] = []
    if resume is None:
        leftovers = _leftovers(run)
        existing = run_files(out, name)
        if existing and not leftovers:
            raise UserError(
                Problem(
                    display_path(out),
                    None,
                    "",
                    f"already holds run {name} ({plural(len(existing), 'file')}, e.g. {existing[0].name})",
                    _finished_fix(spec, run) or CONTINUE_FIX,
                )
            )
        if leftovers:
            manifest = None  # the failed start is set aside, not continued
        resume_path, offset, index = None, 0, 0
    else:
        point = resume_point(spec, run, resume, dry_run=job.dry_run)
        job.report(point.notes)
        resume_path, offset = point.path, point.step
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
            # resuming a run trained without fplora: record it as segment 0 (what `Catalogue.segments`
            # assumes for it), or its checkpoints would vanish from step resolution after this one
            manifest.segments.append(Segment(output_name=name, num_processes=spec.launch.num_processes))
    segment_name = manifest.segment_name(index)
    own_run = index > 0 and spec.train.logging.to_wandb
    run_file = paths.segment_tracker(index) if own_run else None
    argv = commands.train(
        spec,
        paths,
        job.python,
        output_name=segment_name if index else None,
        resume=resume_path,
        max_train_steps=remaining if index else None,
        log_tracker_config=run_file,
    )
    prepared = Prepared(manifest, index, segment_name, argv, offset, remaining, resume_path, leftovers)
    if run_file is not None:  # a resumed segment's own wandb run (render/tracker.py says why)
        prepared.tracker = (run_file, tracker.tracker_toml(spec, index, offset))
    return prepared


def login_refused(job: Job) -> int:
    """1, said in one line, when the run logs to wandb without a login: checked before the rehearsal
    too, which would spend its minutes on a run that cannot start."""
    if job.dry_run or (login := wandb_login_problem(job.plan.spec)) is None:
        return 0
    job.report([login])
    return 1


def run_train(job: Job, *, resume: str | None, no_rehearse: bool, with_cache: bool = False) -> int:
    """`fplora train [--resume] [--cache]`: the segment decided and the caches and GPUs checked first,
    so that a refusal (a finished run, a state that is not there, a stale cache) costs neither the
    rehearsal (`jobs.rehearse.gate`, half a minute when the spec changed) nor caching."""
    try:
        prepared = prepare_train(job, resume=resume)
        if not job.dry_run and not with_cache and _only_links(job):
            with_cache = True  # the store holds every file: linking them computes nothing
        if not job.dry_run and (problems := _unready(job, caches_too=not with_cache)):
            raise UserError(problems)
        if gate(job, skip=no_rehearse):
            return 1
        if with_cache:
            code = run_cache(job)
            if code:
                return code
        if job.dry_run:
            job.show(prepared.argv)
            return 0
        return execute_train(job, prepared, caches_checked=not with_cache)
    except UserError as error:
        if job.dry_run:
            raise
        job.report(error.problems)
        return 1


def _set_aside(job: Job, leftovers: list[Path]) -> None:
    stamp = timestamp()
    for path in leftovers:
        target = path.with_name(f"{path.name}.failed-{stamp}")
        path.rename(target)
        job.console.print(f"set aside {display_path(path)} of a start that saved nothing → {target.name}")


def _unready(job: Job, *, caches_too: bool) -> list[Problem]:
    """What refuses a training on this machine: fewer GPUs than processes, and (`caches_too`) cache
    folders that miss or hold outdated files."""
    spec = job.plan.spec
    gpus = gpu_problem(spec)
    return ([gpus] if gpus else []) + (_cache_problems(job) if caches_too else [])


def _only_links(job: Job) -> bool:
    """Every entry `fplora cache` would fill (the evaluation split's too) lacks links alone."""
    spec = job.plan.spec
    records = split.entry_records(spec, job.plan.records or RecordCache(spec))
    return caches.only_links(spec, records, spec.cache_entries)


def _cache_problems(job: Job) -> list[Problem]:
    spec = job.plan.spec
    return caches.problems(spec, split.training_records(spec, job.plan.records or RecordCache(spec)))


def execute_train(job: Job, prepared: Prepared, *, caches_checked: bool = False) -> int:
    """Run a prepared segment: caches checked (here unless `caches_checked`: `run_train` did, before
    the rehearsal), lock held, manifest and log kept."""
    spec = job.plan.spec
    out, name = spec.train.output_dir, spec.output_name
    if not caches_checked and (problems := _cache_problems(job)):
        raise UserError(problems)
    out.mkdir(parents=True, exist_ok=True)
    with locked(lock_path(out, name)) as lock:
        if prepared.leftovers:
            _set_aside(job, prepared.leftovers)
        if prepared.tracker is not None:
            write_atomic(prepared.tracker[0], render_files.header(spec) + prepared.tracker[1])
        segment = _start_segment(job, prepared)
        _announce(job, prepared)
        job.show(prepared.argv)
        losses = _LossWatch(segment)
        try:
            result = process.run(prepared.argv, log=Path(segment.log), on_line=losses, on_start=lock.add)
        except BaseException as error:
            # fplora failed while the child ran; `process.run` has stopped it: record where it got
            _record_abort(prepared.manifest, segment, losses, out)
            if isinstance(error, OSError):
                raise UserError(_abort_problem(segment, error)) from error
            raise
        segment.ended = now()
        segment.exit_code = result.returncode
        segment.interrupted = result.interrupted
        segment.losses = losses.in_order()
        if result.returncode == 0 and segment.last_step is None:
            segment.last_step = prepared.remaining
        _save_end(prepared.manifest, segment, out)
    state = "interrupted" if result.interrupted else ("finished" if result.returncode == 0 else "failed")
    end = f" at global step {segment.end_step}" if segment.end_step is not None else ""
    job.say(f"training {state}{end} (exit {result.returncode}); log: {display_path(Path(segment.log))}")
    if result.returncode != 0:
        job.say(_continue_hint(spec, interrupted=result.interrupted))
    if (offline := _offline_wandb(spec)) is not None:
        job.say(offline)
    return result.returncode


def _offline_wandb(spec: Spec) -> str | None:
    """Where an offline wandb run went and how to upload it: WANDB_MODE=offline (a pod without a
    login) writes the run under $WANDB_DIR/wandb/ or ./wandb/ (musubi-tuner runs in this folder),
    and nothing else says so."""
    mode = os.environ.get("WANDB_MODE", "")
    if spec.train.logging.log_with not in ("wandb", "all") or mode not in ("offline", "dryrun"):
        return None
    folder = Path(os.environ.get("WANDB_DIR") or ".") / "wandb"
    shown = display_path(folder)
    return (
        f"wandb ran offline (WANDB_MODE={mode}): its run is under {shown}/; upload it where there is"
        f" network: wandb sync {shown}/offline-run-*"
    )


def _continue_hint(spec: Spec, *, interrupted: bool = False) -> str:
    """After a stopped training, the one command that goes on from where it is: the run's newest
    state, read afresh (this segment may have saved some); with nothing saved, the same command
    again (`_leftovers` sets the failed start aside), said as starting over after a Ctrl-C
    (`interrupted`), where no cause needs fixing; with LoRAs but no state, a new version."""
    run = Catalogue.of(spec)
    command = f"fplora train {display_path(spec.path)}"
    try:
        newest = run.resolve("latest", "state")
    except UserError:
        if not run.checkpoints and interrupted:
            every = spec.train.save_every_n_steps
            when = f" (train.save_every_n_steps {every})" if every else ""
            return (
                f"stopped before the first save{when}: nothing to resume — run `{command}` again to"
                " start over"
            )
        if not run.checkpoints:
            return f"nothing was saved: once the cause is fixed, run `{command}` again"
        return "no state was saved (train.save_state is off), so it cannot be resumed: train a new version"
    return f"continue from {newest.label}: {command} --resume latest"


def _record_abort(manifest: Manifest, segment: Segment, losses: _LossWatch, out: Path) -> None:
    """End a segment whose child fplora stopped because fplora itself failed: shown as interrupted,
    with the steps it reached. Saving may fail for the same reason (a full disk); then the segment
    stays unended, which `fplora runs` shows as stopped."""
    segment.ended = now()
    segment.interrupted = True
    segment.losses = losses.in_order()
    with contextlib.suppress(OSError):
        manifest.save(out)


def _save_end(manifest: Manifest, segment: Segment, out: Path) -> None:
    """Record the segment's end; a manifest that cannot be written (a full disk) is one line that
    says what the training did, not a traceback."""
    try:
        manifest.save(out)
    except OSError as error:
        where = display_path(Manifest.path_for(out, manifest.output_name))
        raise UserError(
            Problem(
                where,
                None,
                "",
                f"cannot record the end of {segment.output_name} ({error.strerror or error}); its training"
                f" ended with exit {segment.exit_code}, log: {display_path(Path(segment.log))}",
                "free disk space; `fplora runs` shows the segment as stopped, its checkpoints are on disk",
            )
        ) from error


def _abort_problem(segment: Segment, error: OSError) -> Problem:
    where = display_path(Path(error.filename)) if error.filename else display_path(Path(segment.log))
    reached = f" at global step {segment.end_step}" if segment.end_step is not None else ""
    return Problem(
        where,
        None,
        "",
        f"fplora failed while training ran ({error.strerror or error}); the training was stopped{reached}",
        "fix that (free disk space, say), then continue with `fplora train --resume latest`",
    )


def _start_segment(job: Job, prepared: Prepared) -> Segment:
    """Record the segment in the manifest before its process starts (a killed fplora leaves a
    segment with no end, which `fplora runs` shows as stopped); refuse a resumed segment's name
    that already has files."""
    spec = job.plan.spec
    out = spec.train.output_dir
    clash = [p for p in run_files(out, prepared.segment_name) if p.name.startswith(prepared.segment_name)]
    if prepared.index and clash:
        raise UserError(
            Problem(
                display_path(clash[0]), None, "", "exists already; not overwriting it", "remove it by hand"
            )
        )
    segment = Segment(
        output_name=prepared.segment_name,
        step_offset=prepared.offset,
        resumed_from=str(prepared.resume_path) if prepared.resume_path else None,
        num_processes=spec.launch.num_processes,
        command=prepared.argv,
        log=str(out / f"{prepared.segment_name}.log"),
        started=now(),
        spec_resolved=spec.model_dump(mode="json", by_alias=True),
        rendered={str(p): t for p, t in job.plan.files.items() if p.suffix != ".jsonl"},
    )
    prepared.manifest.segments.append(segment)
    prepared.manifest.save(out)
    return segment


def _announce(job: Job, prepared: Prepared) -> None:
    """Where a resumed segment starts, and what musubi-tuner does to a decaying schedule then."""
    if not prepared.offset:
        return
    job.say(f"resuming at global step {prepared.offset} as {prepared.segment_name}")
    scheduler = job.plan.spec.train.optimizer.lr_scheduler
    if scheduler not in (None, "constant", "constant_with_warmup"):
        job.say(
            f"warning: musubi-tuner rebuilds the {scheduler} schedule for the {prepared.remaining}"
            " remaining steps and then restores the state's step count: the learning rate will not"
            " follow the original curve",
            "yellow",
        )


class _LossWatch:
    """Reads musubi-tuner's progress bar as it streams: the last step reached and each step's loss
    (a finite loss wins over a NaN redraw of the same step)."""

    def __init__(self, segment: Segment) -> None:
        self.segment = segment
        self.losses: dict[int, float] = {}

    def __call__(self, line: str) -> None:
        for match in TRAIN_STEP_RE.finditer(line):
            step, loss = int(match.group(1)), float(match.group(3))
            self.segment.last_step = max(self.segment.last_step or 0, step)
            if math.isfinite(loss) or step not in self.losses:
                self.losses[step] = loss

    def in_order(self) -> list[float]:
        return [self.losses[s] for s in sorted(self.losses)]
