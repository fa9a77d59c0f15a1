"""A failed stage, told to the user: the stage, its command, musubi-tuner's own last error line,
where it was raised, and the spec lines that rendered the options involved (or, when the error names
none, the lines of the part of musubi-tuner it came from)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fplora.jobs.rehearse.stages import Rehearsal, Stage
from fplora.problems import Problem, display_path
from fplora.protocol import eval as eval_protocol
from fplora.protocol import rehearse as rehearse_protocol
from fplora.protocol import sweep as sweep_protocol
from fplora.spec.models import MODEL_KEYS, Spec
from fplora.spec.rules.pass_through import DATASET_KEYS, rendered_options
from fplora.spec.source import dotted

if TYPE_CHECKING:
    from fplora.jobs.rehearse.watch import Outcome


_ERROR_LINE = re.compile(r"(Error|Exception|error:|ERROR|Traceback|failed|Failed)")
_NOT_AN_ERROR = re.compile(r"^(WARNING|INFO|DEBUG)[:\s]|^Failed to import [\w.]+$")
"""A logged warning or note (`WARNING:bitsandbytes...: Failed to load ...` as a package is imported),
or musubi-tuner's own notice of an optional kernel it did not find (`Failed to import sageattention`,
printed by hunyuan_model/attention.py on every machine without it), is not the stage's error,
whatever words it uses: a hung or killed stage's report would blame it instead of the spec lines of
the stage."""


WORKER_EVENTS = (eval_protocol, sweep_protocol)
"""fplora's own workers, whose stages' logs carry their events: a failure is told there as an
event's `error` (the worker's `finished` event, which counts failures, is no error line)."""


def _worker_error(text: str) -> tuple[bool, str | None]:
    """(whether `text` is an event line of fplora's evaluation or sweep worker, the error it tells)."""
    for protocol in WORKER_EVENTS:
        if text.startswith(protocol.EVENT_PREFIX):
            event = protocol.parse_event(text)
            error = event.get("error") if event is not None else None
            return True, str(error) if error else None
    return False, None


def _last_error_line(lines: list[str]) -> str | None:
    for line in reversed(lines):
        text = line.strip()
        event, error = _worker_error(text)
        if event:
            if error:
                return error
            continue
        if (
            text
            and _ERROR_LINE.search(text)
            and not _NOT_AN_ERROR.match(text)
            and not text.startswith(rehearse_protocol.EVENT_PREFIX)
        ):
            return text
    return None


def pass_through_key(section: str, dest: str) -> tuple[str | int, ...] | None:
    sections = {
        "config": ("musubi", "config"),
        "generate": ("musubi", "generate"),
        "cache_latents": ("musubi", "cache_latents"),
        "cache_text_encoder": ("musubi", "cache_text_encoder"),
        "launch": ("launch", "extra"),
    }
    prefix = sections.get(section)
    return (*prefix, dest) if prefix else None


def key_path(dotted_key: str) -> tuple[str | int, ...]:
    """`train.optimizer.type` → ('train', 'optimizer', 'type'); `infer.prompts[].width (…)` →
    ('infer', 'prompts')."""
    key = dotted_key.split(" ")[0].split("[")[0]
    return tuple(key.split("."))


def option_key(spec: Spec, section: str, dest: str) -> tuple[str | int, ...] | None:
    """The spec key that renders option `dest` of a rendered-options section, or the pass-through key
    the spec wrote it under; None when neither."""
    owner = rendered_options().get(section, {}).get(dest)
    if owner:
        return key_path(owner)
    through = pass_through_key(section, dest)
    return through if through is not None and spec.written(through) else None


EVAL_DATASET_KEYS = {**DATASET_KEYS, "batch_size": "eval.batch_size"}
"""The evaluation stage's dataset is the evaluation split, whose batch is `eval.batch_size` (the
datasets' batch sizes do not reach it)."""


def spec_lines(spec: Spec, stage: Stage, text: str) -> list[Problem]:
    """The spec lines that rendered the options `text` (an error and where it was raised) names:
    an option's name, or a value of it that the message quotes."""
    dataset_keys = EVAL_DATASET_KEYS if stage.name == "eval" else DATASET_KEYS
    found: dict[str, Problem] = {}
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.\-]*", text))
    candidates: list[tuple[str, str, Any]] = [(stage.section, k, v) for k, v in stage.options.items()]
    candidates += [("launch", k, v) for k, v in spec.launch.extra.items()]
    for section, dest, value in candidates:
        named = dest in words
        shown = str(value)
        quoted = (
            isinstance(value, str)
            and len(shown) >= 3
            and "/" not in shown
            and (shown in words or f"'{shown}'" in text)
        )
        if not (named or quoted):
            continue
        key = option_key(spec, section, dest)
        if key is None and dest in dataset_keys:
            key = key_path(dataset_keys[dest])
        if key is None or dotted(key) in found:
            continue
        problem = spec.problem(key, f"renders {dest} = {shown}")
        found[dotted(key)] = problem
    for dest, owner in dataset_keys.items():
        if dest in words and owner not in found:
            found[owner] = spec.problem(key_path(owner), f"renders dataset key {dest}")
    return list(found.values())


AREAS: tuple[tuple[re.Pattern[str], tuple[tuple[str | int, ...], ...]], ...] = (
    (
        re.compile(r"networks/|:(create_arch_network|create_network|apply_to|prepare_optimizer_params)"),
        (("train", "network"), ("musubi", "config", "network_weights"), ("musubi", "config", "network_args")),
    ),
    (re.compile(r":get_optimizer|:get_scheduler|:get_lr_scheduler"), (("train", "optimizer"),)),
    (
        re.compile(r":(sample_images|sample_image_inference|do_inference|process_sample_prompts)"),
        (("sample",),),
    ),
    (re.compile(r"dataset/"), (("data",), ("datasets",), ("one_frame",))),
    (re.compile(r"fpack_generate_video.py:(generate|main|process_batch_prompts)"), (("infer",),)),
    (re.compile(r"^accelerate/(commands|utils)/launch\.py:"), (("launch",),)),
)
"""Where in musubi-tuner an error was raised → the spec sections that configure that part: an error
that quotes no option name (a network module that matched nothing, an optimizer argument of the
wrong kind, a prompt the sampler cannot run) still points at the lines the user wrote there."""


def _written_under(spec: Spec, prefix: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    """The deepest keys the spec (or a file it extends) wrote under `prefix`, lists as a whole."""
    found = []
    for key in spec.written_keys():
        if key[: len(prefix)] == prefix and not any(isinstance(part, int) for part in key):
            found.append(key)
    leaves = [k for k in found if not any(o != k and o[: len(k)] == k for o in found)]
    return sorted(leaves, key=str)


def area_lines(spec: Spec, stage: Stage, frames: list[str]) -> list[Problem]:
    """The spec lines of the part of musubi-tuner the error came from, and the pass-through options
    of the failing script (settings fplora passes on unchecked)."""
    keys: list[tuple[str | int, ...]] = []
    if not frames and stage.section == "generate":
        frames = ["fpack_generate_video.py:generate"]  # a prompt failed inside generate's own loop
    for pattern, prefixes in AREAS:
        if any(pattern.search(frame) for frame in frames):
            for prefix in prefixes:
                keys += _written_under(spec, prefix)
    through = pass_through_key(stage.section, "")
    if through is not None:
        keys += _written_under(spec, through[:-1])
    shown: list[Problem] = []
    for key in dict.fromkeys(keys):
        shown.append(spec.problem(key, "set here"))
    return shown


def describe_failure(rehearsal: Rehearsal, outcome: Outcome) -> list[str]:
    """What a failed stage prints: the stage, its command, musubi-tuner's last error line, where it
    was raised, and the spec lines that rendered the options involved."""
    stage = outcome.stage
    lines = [f"rehearsal failed at stage {stage.name} ({stage.what}): {outcome.problem}"]
    lines.append("  command: " + " ".join(_shown(a) for a in stage.argv))
    error = outcome.error or _last_error_line(outcome.log)
    if error:
        lines.append(f"  musubi-tuner: {error}")
    if outcome.where:
        lines.append(f"  raised at: {outcome.where}")
    text = " ".join([error or "", outcome.where or ""])
    named = spec_lines(rehearsal.spec, stage, text)
    if not named and not error and not outcome.frames:
        named = given_lines(rehearsal.spec, stage)  # a hang, or nothing written: no error to read
    for problem in named or area_lines(rehearsal.spec, stage, outcome.frames):
        lines.append(f"  spec: {problem}")
    return lines


def given_lines(spec: Spec, stage: Stage) -> list[Problem]:
    """The spec lines the user wrote that rendered the stage's options (model paths aside: the
    rehearsal replaces them) and, for caching, its dataset keys: where to look when a stage hangs
    or writes nothing, and so names no option in an error."""
    keys: list[tuple[str | int, ...]] = []
    for dest in stage.options:
        key = option_key(spec, stage.section, dest)
        if key and key[-1] not in MODEL_KEYS and spec.written(key):
            keys.append(key)
    if stage.section.startswith("cache"):
        keys += [key_path(owner) for owner in DATASET_KEYS.values() if spec.written(key_path(owner))]
    return [spec.problem(key, "set here") for key in dict.fromkeys(keys)]


def _shown(arg: str) -> str:
    return display_path(arg) if os.sep in arg and Path(arg).is_absolute() else arg
