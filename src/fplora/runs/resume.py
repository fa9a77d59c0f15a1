"""Where `fplora train --resume` continues from, and whether the spec still fits that state.

`latest`, `stepN` or a path names a `-state` folder (`runs/checkpoints.py`); this finds the global
step it holds, refuses what musubi-tuner could not load (another process count, another network or
optimizer), and notes what else changed, a branch over steps already trained, and a warm start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fplora.jobs import Job
from fplora.musubi.names import STATE_STEP_SUFFIX
from fplora.problems import Problem, UserError, display_path
from fplora.runs.checkpoints import Checkpoint, expected, find, resolve
from fplora.runs.manifest import Manifest


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


def resume_point(job: Job, manifest: Manifest | None, which: str) -> tuple[Path, int]:
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
