"""The wandb run a training logs to: musubi-tuner's `log_tracker_config` file (pure).

musubi-tuner starts wandb through accelerate: `accelerator.init_trackers(log_tracker_name,
config=<its own arguments>, init_kwargs=...)`, where `init_kwargs` is `{"wandb": {"name":
wandb_run_name}}`, or the whole TOML file `log_tracker_config` names when one is given (it then
replaces the run name). accelerate calls `wandb.init(project=log_tracker_name, **init_kwargs["wandb"])`
and adds musubi-tuner's arguments to the run's config. So everything fplora wants in the run goes in
that file's `[wandb]` table: the name, a run id fplora can find again (for `fplora eval` to add its
losses to the same run), `resume = "allow"`, the group, tags from the spec (version, GPU preset) and
the resolved spec as `config.fplora` (no secret can be in it: `spec/secrets.py` refuses a spec that
holds one before anything is rendered).

Resumed segments: musubi-tuner counts steps from 0 again after `resume` (a TODO in its training
loop), and wandb ignores a step lower than one the run already has, so a resumed segment logging into
the first segment's run would lose its losses or file them at the wrong steps. Each resumed segment
is therefore a run of its own (`<id>-r1`, named `<name>-r1`) in the same group, its config holding
the global step it starts at (`fplora_step_offset`); the evaluation losses and contact sheets, logged
by fplora at global steps, go to the first segment's run. musubi-tuner's `loss/epoch` is logged at
step `epoch + 1`, below the run's current step, and wandb drops it (musubi-tuner#294); `loss/current`
and `loss/average` carry the same information per step.
"""

from __future__ import annotations

import hashlib
from typing import Any

import tomli_w

from fplora.spec.models import Spec

TRACKER_SECTION = "wandb"


def run_id(spec: Spec, segment: int = 0) -> str:
    """The wandb run id of a training run's segment: stable for the run's output folder and name, so
    every fplora command finds the same run; `-r<k>` for the k-th resumed segment."""
    key = f"{spec.train.output_dir.resolve()}\n{spec.output_name}".encode()
    base = f"fplora-{hashlib.sha256(key).hexdigest()[:16]}"
    return f"{base}-r{segment}" if segment else base


def project(spec: Spec) -> str:
    """The wandb project: musubi-tuner's `log_tracker_name` as fplora renders it."""
    return spec.train.logging.tracker_name or spec.project


def run_name(spec: Spec, segment: int = 0) -> str:
    name = spec.train.logging.run_name or spec.output_name
    return f"{name}-r{segment}" if segment else name


def tags(spec: Spec) -> list[str]:
    """The spec's version and GPU preset, and fplora."""
    found = [spec.version, f"gpu:{spec.gpu or 'none'}", "fplora"]
    return list(dict.fromkeys(found))


def _without_none(value: Any) -> Any:
    """TOML has no null: a setting left unset is left out (its default applies)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def init_kwargs(spec: Spec, segment: int = 0, step_offset: int = 0) -> dict[str, Any]:
    """What accelerate passes to `wandb.init` besides the project, for one training segment."""
    config: dict[str, Any] = {"fplora": _without_none(spec.model_dump(mode="json", by_alias=True))}
    if segment:
        config["fplora_step_offset"] = step_offset
    return {
        "name": run_name(spec, segment),
        "id": run_id(spec, segment),
        "resume": "allow",
        "group": spec.output_name,
        "job_type": "train",
        "tags": tags(spec),
        "config": config,
    }


def tracker_toml(spec: Spec, segment: int = 0, step_offset: int = 0) -> str:
    """The `log_tracker_config` file's text."""
    return tomli_w.dumps({TRACKER_SECTION: init_kwargs(spec, segment, step_offset)})
