"""`fplora export`: one checkpoint of a run, in the layouts FramePack's front ends load, with its
metadata completed and a model card beside it.

Layouts (`lora/layout.py`): `musubi` is musubi-tuner's own file with the tensor bytes untouched and
the metadata completed; `diffusers` maps each of the 440 modules by its DiT path to
`transformer.<path>.lora_A/B.weight` with alpha folded into B. Both go to
`<output_dir>/export/<name>/` unless `--out` says where; files there are replaced only with
`--force`, and never a file of the run itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fplora.atomic import write_atomic
from fplora.datasets.records import RecordCache
from fplora.lora import tensors
from fplora.lora.card import Exported, Picture, card
from fplora.lora.facts import Facts, base_model, one_frame_facts, spec_hash
from fplora.lora.layout import Converted, Module, modules_of, to_diffusers
from fplora.lora.tensors import DTYPES, FLOAT32
from fplora.musubi import schema
from fplora.musubi.framepack import lora_modules
from fplora.musubi.names import LORA_WEIGHTS_HASH_KEY
from fplora.problems import Problem, UserError, display_path, note
from fplora.runs.catalogue import Catalogue
from fplora.runs.checkpoints import Checkpoint, run_files
from fplora.runs.loras import lora_problem, running_training
from fplora.spec.models import Spec
from fplora.writable import folder_problem

LAYOUTS = ("musubi", "diffusers")
EXPORT_DIR = "export"
CARD = "README.md"
_DTYPE_WORDS = {value: key for key, value in DTYPES.items()}
_LEGACY_HASH_KEY = "sshs_legacy_hash"  # a hash of the musubi-tuner file's bytes; wrong for another file


@dataclass
class Result:
    """What an export wrote, and what to tell the user."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)


def stem_of(spec: Spec, checkpoint: Checkpoint) -> str:
    """`<output_name>-step00005000` for a step of the run, else the file's own stem."""
    if checkpoint.step is not None and checkpoint.segment >= 0:
        return f"{spec.output_name}-step{checkpoint.step:08d}"
    return checkpoint.path.stem


def file_names(stem: str) -> dict[str, str]:
    return {"musubi": f"{stem}.safetensors", "diffusers": f"{stem}-diffusers.safetensors"}


def _checkpoint(run: Catalogue, lora: str) -> Checkpoint:
    checkpoint = run.resolve(lora, "lora")
    problem = lora_problem(checkpoint, running_training(run), run)
    if problem is not None:
        raise UserError(problem)
    return checkpoint


def _another_run(spec: Spec, source: Path, metadata: dict[str, str]) -> list[Problem]:
    """A warning when the file names another run as its maker (musubi-tuner's `ss_output_name`):
    a LoRA given by path from another version's folder got this spec's one-frame settings, step and
    hash in its metadata and card, as if this spec had trained it."""
    trained_by = metadata.get("ss_output_name")
    if not trained_by or re.fullmatch(rf"{re.escape(spec.output_name)}(-r[1-9]\d*)?", trained_by):
        return []
    return [
        Problem(
            display_path(source),
            None,
            "",
            f"saved by the run {trained_by} (its ss_output_name), not {spec.output_name}: the card and"
            f" metadata give the settings of {display_path(spec.path)}",
            "export it with the spec that trained it",
            "warning",
        )
    ]


def _check_out(out: Path, name: str) -> None:
    """`--out` names the folder the files go into. A file there (a LoRA's own name given as the
    target, say) made mkdir raise FileExistsError as a traceback."""
    if out.exists() and not out.is_dir():
        raise UserError(
            Problem(
                display_path(out),
                None,
                "--out",
                "is a file; --out names the folder the export goes into",
                f"give a folder, e.g. --out {display_path(out.parent / name)}",
            )
        )
    if wrong := folder_problem(out):
        raise UserError(Problem(display_path(out), None, "--out", *wrong))


def _refuse_overwrite(spec: Spec, targets: list[Path], *, force: bool) -> None:
    run = {p.resolve() for p in run_files(spec.train.output_dir, spec.output_name)}
    problems = []
    for target in targets:
        if target.resolve() in run:
            problems.append(
                Problem(
                    display_path(target),
                    None,
                    "--out",
                    "is a file of the run itself; an export never replaces it",
                    "give another --out folder",
                )
            )
    there = [target for target in targets if target.exists() and target.resolve() not in run]
    if len(there) > 1 and not force and len({target.parent for target in there}) == 1:
        # the same export run again: one cause, said once at its folder
        problems.append(
            Problem(
                display_path(there[0].parent),
                None,
                "",
                f"holds an earlier export ({', '.join(target.name for target in there)})",
                "replace it with --force, or give another --out",
            )
        )
    elif not force:
        problems += [
            Problem(display_path(target), None, "", "exists already", "replace it with --force")
            for target in there
        ]
    if problems:
        raise UserError(problems)


def _eval_facts(run: Catalogue, checkpoint: Checkpoint) -> dict[str, Any]:
    scores = run.scores
    if scores is None:
        return {}
    mine = checkpoint.path.resolve()
    point = next(
        (p for p in scores.points if p.lora is not None and Path(p.lora).resolve() == mine),
        None,
    ) or next(
        (
            p
            for p in scores.points
            if p.lora is not None and checkpoint.step is not None and p.step == checkpoint.step
        ),
        None,
    )
    untrained = next((p for p in scores.points if p.lora is None), None)
    best = scores.best()
    return {
        "eval_loss": point.loss if point else None,
        "eval_untrained": untrained.loss if untrained and point else None,
        "eval_best": (best.label, best.loss) if best and point else None,
    }


def _shown_controls(paths: Sequence[Path]) -> list[str]:
    """A prompt's control images as the card names them: file names (no folders of the machine that
    trained), with their folder where two share a name, as in a dataset laid out as `control_0/a.png`,
    `control_1/a.png`, where the card said `a.png`, `a.png`."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{p.parent.name}/{p.name}" for p in paths]


def _prompts(spec: Spec) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The infer prompts (captions filled from their records), or, where the records cannot be
    read on this machine, those written out in the spec."""
    from fplora.plan import resolve_infer_prompts

    try:
        lines = resolve_infer_prompts(spec, RecordCache(spec))
    except UserError as error:
        _, prompts = spec.prompts_of("infer")
        written = [
            {"text": p.text, "controls": _shown_controls(p.control_images or []), "seed": p.seed}
            for p in prompts
            if p.text is not None
        ]
        why = error.problems[0].message if error.problems else "records unreadable"
        return written, [note(f"model card: prompts from records left out ({why})")]
    return [
        {"text": line.text, "controls": _shown_controls(line.control_images), "seed": line.seed}
        for line in lines
    ], []


def _sheets(spec: Spec, checkpoint: Checkpoint, facts: Facts, folder: Path) -> list[Picture]:
    """This checkpoint's row of the run's contact sheets (`fplora infer`), one PNG per prompt."""
    from fplora.runs.infer_folders import save_root
    from fplora.sheet.collect import Grid, collect
    from fplora.sheet.draw import draw_sheet

    row = checkpoint.label if checkpoint.step is not None else ("final" if checkpoint.final else "")
    pictures: list[Picture] = []
    for grid in collect(save_root(spec), spec.version):
        cells = {key: cell for key, cell in grid.cells.items() if key[0] == row and cell.images}
        if not cells:
            continue
        mine = Grid(grid.version, grid.root, cells, grid.prompts)
        for prompt in grid.prompts:
            if not any(prompt.line in cell.images for cell in cells.values()):
                continue
            number = next(
                (
                    i
                    for i, p in enumerate(facts.prompts, start=1)
                    if p["text"] == prompt.text and p.get("seed") == prompt.seed
                ),
                None,
            )
            if number is None:
                continue
            path = folder / f"sheet-prompt{number:02d}.png"
            draw_sheet(mine, prompt, number).save(path)
            pictures.append(Picture(path.name, number))
    return pictures


def gather(spec: Spec, run: Catalogue, checkpoint: Checkpoint, modules: list[Module], name: str) -> Facts:
    manifest = run.manifest
    musubi = dict(manifest.musubi_tuner) if manifest and manifest.musubi_tuner else {}
    musubi = musubi or {"version": schema.pinned_version(), "commit": schema.pinned_commit()}
    first = modules[0]
    return Facts(
        name=name,
        output_name=spec.output_name,
        spec_file=spec.path.name,
        spec_sha256=spec_hash(spec),
        step=checkpoint.step,
        base_model=base_model(spec.models.dit),
        dit_file=spec.models.dit.name,
        rank=first.rank,
        alpha=first.alpha if first.alpha is not None else float(first.rank),
        musubi_tuner=musubi,
        **one_frame_facts(spec),
        **_eval_facts(run, checkpoint),
        eval_trained_on=spec.eval is not None and spec.eval.allow_training_records,
    )


def _weights_hash(chunks: list[bytes]) -> str:
    """musubi-tuner's `sshs_model_hash` of a file: sha256 of every byte after the header."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _fold_notes(converted: Converted, source: str) -> list[Problem]:
    """How alpha went into the weights, and the one consequence of a float32 file."""
    scales = ", ".join(f"{s:g}" for s in converted.scales)
    name = _DTYPE_WORDS.get(converted.dtype, converted.dtype)
    how = (
        f"exactly, {name}"
        if converted.exact
        else f"rounded to {name}, largest change {converted.largest_change:.2g} relative"
    )
    notes = [note(f"diffusers layout: alpha/rank {scales} folded into lora_B {how}")]
    if converted.dtype == FLOAT32 and source != FLOAT32:
        notes.append(
            note(
                f"diffusers layout written in float32 ({_DTYPE_WORDS.get(source, source)} could not hold"
                " the folded weights exactly): PEFT front ends load it; musubi-tuner's fpack_generate_video"
                " cannot merge a float32 LoRA into its bf16 DiT, so give it the musubi layout (or export"
                " --dtype bf16)"
            )
        )
    return notes


def export(
    spec: Spec, lora: str, layouts: list[str], out: Path | None, *, force: bool, dtype: str | None = None
) -> Result:
    """Resolve `lora`, check it, and write each layout, the card and this checkpoint's sheets.
    `dtype` (a safetensors dtype) for the diffusers layout; None: `to_diffusers`' choice."""
    run = Catalogue.of(spec)  # the run's folder, read once for this export
    checkpoint = _checkpoint(run, lora)
    source = checkpoint.path
    weights, metadata = tensors.read(source)
    modules = modules_of(weights, display_path(source))
    if not modules:
        raise UserError(
            Problem(display_path(source), None, "", "holds no LoRA module", "export a FramePack LoRA")
        )
    name = stem_of(spec, checkpoint)
    folder = out or spec.train.output_dir / EXPORT_DIR / name
    if out is not None:
        _check_out(out, name)
    names = file_names(name)
    targets = [folder / names[layout] for layout in layouts]
    _refuse_overwrite(spec, [*targets, folder / CARD], force=force)
    result = Result(folder)
    result.notes += _another_run(spec, source, metadata)
    if len(modules) != len(lora_modules()):
        result.notes.append(
            note(
                f"{display_path(source)} holds {len(modules)} of the DiT's {len(lora_modules())} LoRA modules"
            )
        )
    facts = gather(spec, run, checkpoint, modules, name)
    prompts, said = _prompts(spec)
    facts.prompts = prompts
    result.notes += said
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for layout, target in zip(layouts, targets, strict=True):
        completed = {**metadata, **facts.metadata(layout, folded=layout == "diffusers")}
        if layout == "musubi":
            tensors.with_metadata(source, target, completed)
        else:
            converted = to_diffusers(modules, dtype)
            completed.pop(_LEGACY_HASH_KEY, None)
            entries, chunks = tensors.data(converted.tensors)
            completed[LORA_WEIGHTS_HASH_KEY] = _weights_hash(chunks)
            tensors.write(target, entries, chunks, completed)
            result.notes += _fold_notes(converted, modules[0].up.dtype)
        written.append(Exported(target.name, layout))
        result.files.append(target)
    pictures = _sheets(spec, checkpoint, facts, folder)
    result.files += [folder / p.file for p in pictures]
    write_atomic(folder / CARD, card(facts, written, pictures))
    result.files.append(folder / CARD)
    return result
