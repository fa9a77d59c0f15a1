"""Sample and inference prompts: their records exist, their images open, their text parses.

A prompt line is built from a dataset record (its caption, start and control images) or written out in
full. musubi-tuner reads prompt files only when it first samples, after caching and model loading, and
its prompt parsers misread some texts without a word (`fplora.musubi.names.prompt_text_problem`), so
all of that is checked here. Caption traps are prompt problems only: training reads captions verbatim.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from fplora.check.images import ImageInfo
from fplora.check.jsonl import unreadable
from fplora.datasets.records import Record, Records
from fplora.musubi.names import option_value_problem, prompt_text_problem
from fplora.problems import Problem, display_path
from fplora.render.prompts import PromptLine, options_after_text
from fplora.spec.models import Prompt, Spec
from fplora.spec.source import KeyPath

_SPEC_PATH_FIX = "check the path; relative paths resolve against the spec file's folder"


def prompt_sections(spec: Spec) -> list[tuple[str, list[Prompt]]]:
    """The prompt lists to check. `infer.prompts` unset means the sample prompts, checked once."""
    sections = [spec.prompts_of("sample"), spec.prompts_of("infer")]
    return sections[:1] if sections[1][0] == "sample" else sections


def prompt_paths(spec: Spec) -> Iterator[str]:
    """Images that prompts name explicitly (record images are probed with their dataset)."""
    for _, prompts in prompt_sections(spec):
        for prompt in prompts:
            if prompt.image is not None:
                yield str(prompt.image)
            for control in prompt.control_images or []:
                yield str(control)


def _record_lines(records: Records) -> str:
    lines = [record.line for record in records.items]
    if not lines:
        return f"{display_path(records.jsonl)} has no valid records"
    if len(lines) == lines[-1] - lines[0] + 1:
        return f"{display_path(records.jsonl)} has records on lines {lines[0]}-{lines[-1]}"
    return f"{display_path(records.jsonl)} has records on lines {lines[0]}..{lines[-1]} (with gaps)"


def _image(spec: Spec, key: KeyPath, path: Path, images: Mapping[str, ImageInfo]) -> Iterator[Problem]:
    info = images[str(path)]
    if not info.ok:
        fix = _SPEC_PATH_FIX if info.error == "not found" else info.fix
        yield spec.problem(key, f"{display_path(path)} {info.error}", fix)


def _set_later(spec: Spec, section: str, prompt: Prompt) -> set[str] | None:
    """The options a training sample line of the prompt sets after its text (`prompt_text_problem`),
    or None where only generate reads the prompt: an `infer` prompt of its own, or sample prompts
    that training does not sample (then `fplora infer` alone uses them)."""
    if section != "sample" or not spec.sample.during_training:
        return None
    line = PromptLine(
        text="x",
        image=Path("image"),
        control_images=(),
        width=1,
        height=1,
        seed=0,
        steps=prompt.steps or spec.sample.steps,
        guidance_scale=prompt.guidance_scale,
        cfg_scale=prompt.cfg_scale,
        negative_prompt=prompt.negative_prompt,
    )
    return options_after_text(line, "train")


def _text(
    prompt: Prompt, record: Record | None, at: KeyPath, jsonl: Path | None, set_later: set[str] | None
) -> tuple[KeyPath, str, str] | None:
    """(key, message, fix) when the prompt's text, its own or its record's caption, would be misread."""
    if prompt.text is not None:
        trap = prompt_text_problem(prompt.text, set_later)
        return ((*at, "text"), f"prompt text {trap}", "reword the text") if trap else None
    if record is None or record.caption is None or jsonl is None:
        return None  # no record, or no caption: reported where the record is
    trap = prompt_text_problem(record.caption, set_later)
    if trap is None:
        return None
    return (
        (*at, "record"),
        f"caption of {display_path(jsonl)}:{record.line} {trap}",
        "give the prompt its own `text:`, or reword the caption",
    )


def check_prompts(spec: Spec, datasets: Sequence[Records], images: Mapping[str, ImageInfo]) -> list[Problem]:
    """Problems of every sample and inference prompt, located at its key in the spec.

    Per prompt, in the order its keys are usually written: record, text, image, control images.
    """
    by_line: dict[int, dict[int, Record]] = {}
    problems: list[Problem] = []
    for section, prompts in prompt_sections(spec):
        for index, prompt in enumerate(prompts):
            at: KeyPath = (section, "prompts", index)
            record: Record | None = None
            jsonl: Path | None = None
            # an out-of-range dataset index is reported by the spec rules, and a dataset file that
            # cannot be read at its `datasets[i].jsonl`; the rest of the prompt is still checked
            if (
                prompt.record is not None
                and prompt.dataset < len(datasets)
                and not unreadable(datasets[prompt.dataset])
            ):
                records = datasets[prompt.dataset]
                jsonl = records.jsonl
                if prompt.dataset not in by_line:
                    by_line[prompt.dataset] = {r.line: r for r in records.items}
                record = by_line[prompt.dataset].get(prompt.record)
                if record is None:
                    problems.append(
                        spec.problem(
                            (*at, "record"),
                            f"no record on line {prompt.record} of datasets[{prompt.dataset}]",
                            f"use a record's line number; {_record_lines(records)}",
                        )
                    )
            text = _text(prompt, record, at, jsonl, _set_later(spec, section, prompt))
            if text is not None:
                problems.append(spec.problem(*text))
            negative = option_value_problem(prompt.negative_prompt) if prompt.negative_prompt else None
            if negative:
                problems.append(
                    spec.problem((*at, "negative_prompt"), f"negative prompt {negative}", "reword it")
                )
            if prompt.image is not None:
                problems.extend(_image(spec, (*at, "image"), prompt.image, images))
            for number, control in enumerate(prompt.control_images or []):
                problems.extend(_image(spec, (*at, "control_images", number), control, images))
    return problems
