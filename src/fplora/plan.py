"""The seam between a validated spec and running anything: rendered files, by path, as text.

`build` reads what rendering needs from disk (dataset records for prompts) and calls the pure
render functions; `write` puts the files in place, refusing to replace files rendered from another
spec (or written by hand) unless forced. `--dry-run`, tests and the runner all start here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fplora.atomic import write_atomic
from fplora.datasets import split
from fplora.datasets.records import RecordCache, Records, absolute_jsonl
from fplora.problems import Problem, UserError, display_path
from fplora.render import files as render_files
from fplora.render import tracker
from fplora.render.edits import hand_edits
from fplora.render.files import HEADER_MARK, RenderedPaths
from fplora.render.prompts import PromptLine, prompts_file
from fplora.render.stamp import read_stamp, stamped
from fplora.spec.models import Prompt, Spec, width_height
from fplora.writable import write_problem


@dataclass
class Plan:
    spec: Spec
    paths: RenderedPaths
    files: dict[Path, str] = field(default_factory=dict)
    sample_prompts: list[PromptLine] = field(default_factory=list)
    infer_prompts: list[PromptLine] = field(default_factory=list)
    data_copies: set[Path] = field(default_factory=set)  # JSONL has no comments: no header to check
    records: RecordCache | None = None  # the records read for this command, for the jobs to reuse


def _size(spec: Spec, prompt: Prompt) -> tuple[int, int]:
    width, height = width_height(spec.dataset_value(prompt.dataset, "resolution"))
    return prompt.width or width, prompt.height or height


def _record_problem(spec: Spec, section: str, index: int, prompt: Prompt, records: Records) -> Problem:
    """Why a prompt's record cannot be read, located at the `record:` line of the spec."""
    jsonl = display_path(spec.datasets[prompt.dataset].jsonl)
    if any(p.message == "dataset JSONL file not found" for p in records.problems):
        message = f"{jsonl} not found: prompts taken from records need it"
    else:
        message = f"{jsonl} has no valid record on line {prompt.record}"
    return spec.problem((section, "prompts", index, "record"), message, "run `fplora check` for the details")


def resolve_prompts(
    spec: Spec,
    section: str,
    records: RecordCache,
    *,
    seed: int,
    steps: int | None,
    flow_shift: float | None,
) -> list[PromptLine]:
    """Fill each prompt of `sample` or `infer` from its dataset record: caption verbatim, first
    control image as the start image. `infer` without prompts of its own takes the sample prompts."""
    section, prompts = spec.prompts_of(section)
    lines = []
    for index, prompt in enumerate(prompts):
        text, image, controls = prompt.text, prompt.image, prompt.control_images
        if prompt.record is not None:
            found = [r for r in records(prompt.dataset).items if r.line == prompt.record]
            if not found:
                raise UserError(_record_problem(spec, section, index, prompt, records(prompt.dataset)))
            record = found[0]
            text = text if text is not None else record.caption
            controls = controls if controls is not None else record.controls
            image = image if image is not None else (controls[0] if controls else record.image)
        assert text is not None and image is not None and controls is not None  # Prompt validator
        width, height = _size(spec, prompt)
        lines.append(
            PromptLine(
                text=text,
                image=image,
                control_images=tuple(controls),
                width=width,
                height=height,
                seed=prompt.seed if prompt.seed is not None else seed + index,
                steps=prompt.steps or steps,
                flow_shift=flow_shift,
                guidance_scale=prompt.guidance_scale,
                cfg_scale=prompt.cfg_scale,
                negative_prompt=prompt.negative_prompt,
            )
        )
    return lines


def resolve_infer_prompts(spec: Spec, records: RecordCache) -> list[PromptLine]:
    """The lines `fplora infer` runs: the training samples' seed unless infer sets its own (steps
    go on generate's command line, render/commands.py), and a flow shift only when infer sets one."""
    infer = spec.infer
    seed = infer.seed if infer.seed is not None else spec.sample.seed
    return resolve_prompts(spec, "infer", records, seed=seed, steps=None, flow_shift=infer.flow_shift)


def _musubi_jsonl(
    spec: Spec, paths: RenderedPaths, records: RecordCache
) -> tuple[list[Path], dict[Path, str]]:
    """The JSONL musubi-tuner reads for each dataset entry (`Spec.cache_entries`): an absolute copy
    when the records use relative paths, and always a copy for the entries the evaluation split
    changes (the training records without the held-out ones, the evaluation records alone), since
    musubi-tuner would cache and train on every line of the file it is given."""
    jsonls, extra = [], {}
    entries = split.entry_records(spec, records)
    for index in spec.cache_entries:
        dataset = spec.dataset_entry(index)
        found = entries(index) if dataset.jsonl.is_file() else None
        evaluation = index == spec.eval_index
        # a copy without held-out lines even when the file has problems: never the whole file
        filtered = evaluation or (found is not None and len(found.items) != len(records(index).items))
        if found is not None and (filtered or (found.has_relative_paths and not found.problems)):
            prefix = "eval" if evaluation else str(index)
            copy = paths.dir / "data" / f"{prefix}-{dataset.jsonl.name}"
            extra[copy] = absolute_jsonl(found)
            jsonls.append(copy)
        else:
            jsonls.append(dataset.jsonl)
    return jsonls, extra


def build(spec: Spec, out_dir: Path | None = None, records: RecordCache | None = None) -> Plan:
    """Render every file the spec needs (config, dataset, both prompt files)."""
    paths = RenderedPaths(out_dir or spec.render_dir)
    records = records or RecordCache(spec)
    head = render_files.header(spec)
    sample = spec.sample
    plan = Plan(spec, paths, records=records)
    # training samples never take a flow shift (musubi/names.py); infer runs with the training
    # samples' seed and step count (`--infer_steps`, render/commands.py) unless infer sets its own
    plan.sample_prompts = resolve_prompts(
        spec, "sample", records, seed=sample.seed, steps=sample.steps, flow_shift=None
    )
    plan.infer_prompts = resolve_infer_prompts(spec, records)
    jsonls, extra = _musubi_jsonl(spec, paths, records)
    plan.files[paths.config] = render_files.config_toml(spec, paths)
    plan.files[paths.resume_config] = render_files.config_toml(spec, paths, resume=True)
    if spec.train.logging.to_wandb:
        plan.files[paths.tracker] = head + tracker.tracker_toml(spec)
    plan.files[paths.dataset] = render_files.dataset_toml(spec, jsonls)
    if spec.eval_index is not None:
        plan.files[paths.cache_dataset] = render_files.dataset_toml(spec, jsonls, spec.cache_entries)
        plan.files[paths.eval_dataset] = render_files.dataset_toml(spec, jsonls, [spec.eval_index])
    plan.files[paths.sample_prompts] = prompts_file(head, spec, plan.sample_prompts, "train")
    plan.files[paths.infer_prompts] = prompts_file(head, spec, plan.infer_prompts, "generate")
    plan.files.update(extra)
    plan.data_copies = set(extra)
    return plan


def rendered_from(path: Path) -> str | None:
    """The spec a rendered file names in its header, '' for a file fplora did not write, None if absent."""
    try:
        with path.open(encoding="utf-8") as handle:
            head = [handle.readline() for _ in range(3)]
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError):
        return ""
    for line in head:
        if line.startswith(HEADER_MARK):
            return line[len(HEADER_MARK) :].strip()
    return ""


RENDER_FIX = "render into another folder with --out, or pass --force"
RENDER_AGAIN = "render with --force"
EDIT_FIX = (
    "put the change in the spec (musubi: passes options through), then render; --force replaces the file"
)


def _ownership_problem(plan: Plan, path: Path, fix: str, again: str = RENDER_AGAIN) -> Problem | None:
    """Why `path` must not be replaced by the plan's file: another spec's, written by hand, or
    fplora's but edited since (a change the user would lose unsaid); None when it may be."""
    stamp = read_stamp(path)
    if stamp is not None:  # by the spec's path relative to the file: a moved project still owns it
        if stamp.spec != plan.spec.path.resolve():
            return Problem(
                display_path(path),
                None,
                "",
                f"was rendered from {display_path(stamp.spec)}; not overwriting it",
                fix,
            )
        if stamp.edited and stamp.unstamped != plan.files[path]:
            edit_fix = EDIT_FIX if fix == RENDER_FIX else fix
            message = "was edited since fplora rendered it; not overwriting it"
            if (found := hand_edits(path, stamp.unstamped, plan.files[path])) is not None:
                changes, places = found
                message = f"was edited since fplora rendered it ({'; '.join(changes)}); not overwriting it"
                which = "it" if len(changes) == 1 else "them"
                where = "; ".join(places)
                edit_fix = f"put {which} in the spec ({where}), then {again}, which replaces the edited file"
            return Problem(display_path(path), None, "", message, edit_fix)
        return None
    owner = rendered_from(path)  # a file of an fplora from before stamps, or none of fplora's
    if owner is None or owner == str(plan.spec.path):
        return None
    what = f"was rendered from {owner}" if owner else "was not written by fplora"
    return Problem(display_path(path), None, "", f"{what}; not overwriting it", fix)


def write(plan: Plan, *, force: bool = False, fix: str = RENDER_FIX, again: str = RENDER_AGAIN) -> list[Path]:
    """Write the plan's files, each stamped (`render.stamp`); refuse (all or nothing) if one belongs
    to another spec or was edited by hand since it was rendered.

    `fix` is what the refusing command's user can do (`cache`, `train` and `infer` have no --force);
    `again`, how they render once a hand edit is in the spec."""
    if not force:
        problems = [
            problem
            for path in sorted(set(plan.files) - plan.data_copies)
            if (problem := _ownership_problem(plan, path, fix, again)) is not None
        ]
        if problems:
            raise UserError(problems)
    for path, text in plan.files.items():
        try:
            write_atomic(path, stamped(path, text, plan.spec.path))
        except OSError as error:  # a read-only configs/, a file where the folder should be
            raise UserError(write_problem(path, error)) from None
    return list(plan.files)
