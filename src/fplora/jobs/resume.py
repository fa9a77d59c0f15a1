"""Where `fplora train --resume` continues from, and whether the spec still fits that state.

`latest`, `stepN` or a path names a `-state` folder (`runs/checkpoints.py`); this finds the global
step it holds, refuses what musubi-tuner could not load (another process count, another network or
optimizer), and notes what else changed, a branch over steps already trained, and a warm start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fplora.musubi.names import STATE_STEP_SUFFIX
from fplora.problems import Problem, UserError, display_path, note, plural
from fplora.runs.catalogue import Catalogue
from fplora.runs.checkpoints import Checkpoint
from fplora.runs.manifest import Manifest
from fplora.spec.learning_rate import derive, number
from fplora.spec.models import Spec


@dataclass
class ResumePoint:
    """The state a resume continues from, the global step it holds, and what to tell the user."""

    path: Path
    step: int
    notes: list[Problem] = field(default_factory=list)


def _branch_note(run: Catalogue, state: Checkpoint) -> Problem | None:
    """A resume that starts a second line of training over steps the run already has."""
    if state.step is None:
        return None
    later = [found.step for found in run.checkpoints if found.step is not None and found.step > state.step]
    if not later:
        return None
    return note(
        f"the run already reached global step {max(later)}; resuming from step"
        f" {state.step} trains steps {state.step + 1}–{max(later)} again in a new segment, and"
        f" stepN then names the new segment's files (the older ones stay, reachable by path)"
    )


# Settings a state cannot be loaded with once changed: the network's tensors and the optimizer's
# state are shaped by them, and musubi-tuner finds out in load_state, after loading the models.
_STATE_SHAPING = ("train.network.module", "train.network.dim", "train.network.args", "train.optimizer.type")
# Settings a resume is expected to change.
_RESUME_CHANGES = ("train.max_train_steps",)
_COMPARED = ("train", "data", "one_frame", "musubi")  # what a state's training depends on


_STATE_FIX = "resume with the settings it was saved with, or start a new version (a new spec file)"
_LAMBDA = "a LambdaLR"


def _scheduler_kind(flat: dict[str, Any]) -> str:
    """The scheduler class musubi-tuner builds for flattened spec settings (get_lr_scheduler,
    training/trainer_base.py:279-423): a torch class named by lr_scheduler_type, its own RexLR for
    rex, else a LambdaLR (every diffusers and transformers schedule, adafactor's too). A state's
    scheduler is loaded into the new one: a LambdaLR takes only a LambdaLR's state."""
    named = flat.get("musubi.config.lr_scheduler_type")
    if named:
        return f"the {named} class's"
    scheduler = flat.get("train.optimizer.lr_scheduler")
    if str(scheduler or "").lower() == "rex":
        return "musubi-tuner's RexLR"
    return f"{_LAMBDA} ({scheduler or 'constant'})"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _said(value: Any) -> str:
    """A setting as the spec writes it: `null`, `true`, a number, text quoted (not Python's `None`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def _compare_settings(spec: Spec, manifest: Manifest, index: int) -> Problem | None:
    """Refuse a resume whose network or optimizer no longer fits the state; note other changes."""
    segment = manifest.segments[index]
    then = segment.spec_resolved
    if not then:
        return None  # a segment fplora did not run: nothing to compare with
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
    problems = [
        spec.problem(
            tuple(key.split(".")),
            f"the state was saved with {_said(before.get(key))}, the spec now says"
            f" {_said(now_.get(key))}: the state cannot be loaded with it",
            _STATE_FIX,
        )
        for key in fatal
    ]
    then_kind, now_kind = _scheduler_kind(before), _scheduler_kind(now_)
    if now_kind.startswith(_LAMBDA) and not then_kind.startswith(_LAMBDA):
        problems.append(
            spec.problem(
                ("train", "optimizer", "lr_scheduler"),
                f"the state was saved with {then_kind} scheduler, the spec now builds {now_kind}: its"
                " load_state_dict needs the lr_lambdas that state lacks (KeyError in musubi-tuner's"
                " load_state, after the models are loaded)",
                _STATE_FIX,
            )
        )
    if problems:
        raise UserError(problems)
    if not changed:
        return None
    shown = ", ".join(f"{key} {_said(before.get(key))} → {_said(now_.get(key))}" for key in changed[:6])
    more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
    return note(f"the spec changed since the state was saved: {shown}{more}")


_RENDERED_RATE = re.compile(r"^learning_rate = (\S+)$", re.MULTILINE)
_RATE_KEYS = ("learning_rate", "tuned_at_batch", "lr_rule")
_RATE_DEFAULTS: dict[str, Any] = {"learning_rate": 1e-3, "tuned_at_batch": None, "lr_rule": "sqrt"}


def _learning_rate_problem(spec: Spec, manifest: Manifest, index: int) -> Problem | None:
    """Refuse a resume whose learning rate would change only because the effective batch did.

    The rate follows the effective batch (`spec/learning_rate.py`), so a new batch size, process
    count or accumulation moves it without the user touching it. musubi-tuner restores the
    optimizer's learning rate from the state (torch's `load_state_dict` of the optimizer and the
    scheduler's `base_lrs`), so the new value would not even apply while config.toml, the manifest
    and wandb's logged config all said it did. A rate the user rewrote is their decision (the
    settings note lists it); a rate that moved by itself is refused."""
    segment = manifest.segments[index]
    then = segment.spec_resolved
    rendered = [text for path, text in segment.rendered.items() if path.endswith(".toml")]
    rates = [float(m.group(1)) for text in rendered if (m := _RENDERED_RATE.search(text))]
    if not rates or not then:
        return None
    before, derived = rates[0], derive(spec)
    if abs(derived.value - before) <= 1e-9 * abs(before):
        return None
    written_then = then.get("train", {}).get("optimizer", {})
    written_now = spec.train.optimizer.model_dump()
    if any(written_then.get(key, _RATE_DEFAULTS[key]) != written_now[key] for key in _RATE_KEYS):
        return None  # the user changed the rate itself: noted with the other settings
    return spec.problem(
        ("train", "optimizer", "tuned_at_batch"),
        f"the state trained at learning_rate {number(before)}; at effective batch {derived.effective}"
        f" this spec derives {number(derived.value)} ({derived.rule} from batch {derived.tuned_at}),"
        " and musubi-tuner would keep the state's rate anyway",
        "resume with the effective batch the state had (batch_size × processes ×"
        " gradient_accumulation_steps), or start a new version (a new spec file) to train at the new rate",
    )


def resume_point(spec: Spec, run: Catalogue, which: str, *, dry_run: bool = False) -> ResumePoint:
    """The state to resume from, the global step it holds, and notes; refuses (UserError) what
    musubi-tuner could not load. A dry run before training names the state that step will have."""
    manifest = run.manifest
    try:
        state = run.resolve(which, "state")
    except UserError:
        future = run.expected(which, "state") if dry_run else None
        if future is None or future.step is None:
            raise
        return ResumePoint(
            future.path, future.step, [note(f"dry run: {display_path(future.path)} does not exist yet")]
        )
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
    notes = []
    if state.segment < 0:
        notes.append(
            note(
                f"{display_path(state.path)} is not a state of {spec.output_name}; its weights and"
                " optimizer start this run (a warm start)"
            )
        )
    notes += [found] if (found := _branch_note(run, state)) else []
    step = state.step
    if step is None:
        match = STATE_STEP_SUFFIX.search(state.path.name)
        if match is None:
            raise UserError(
                [
                    *notes,
                    Problem(
                        display_path(state.path),
                        None,
                        "",
                        "cannot tell which global step this state holds",
                        "resume by step (stepN) or latest, or use a -stepNNNNNNNN-state folder",
                    ),
                ]
            )
        step = int(match.group(1))
    if manifest and 0 <= state.segment < len(manifest.segments):
        notes += [found] if (found := _compare_settings(spec, manifest, state.segment)) else []
        if (rate := _learning_rate_problem(spec, manifest, state.segment)) is not None:
            raise UserError([*notes, rate])
        before = manifest.segments[state.segment].num_processes
        if before != spec.launch.num_processes:
            raise UserError(
                [
                    *notes,
                    Problem(
                        display_path(spec.path),
                        None,
                        "launch.num_processes",
                        f"the state was saved with {plural(before, 'process', 'processes')}, this run uses"
                        f" {spec.launch.num_processes}",
                        "resume with the same number of GPUs (DDP states do not load across process counts)",
                    ),
                ]
            )
    return ResumePoint(state.path, step, notes)
