"""`fplora infer`: batch one-frame inference with a training checkpoint, judged by the files written.

The pinned `fpack_generate_video` exits 0 even when every prompt failed (an fp32 LoRA merged into
the bf16 DiT, for one), so success here means one new file of each kind the output type gives
(latent, image, video) per prompt in the output folder. Which LoRAs run is decided in
`runs/loras.py`, whether their folders may take the files in `runs/infer_folders.py`; this module
runs what they allow and prints what they noted.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path

from fplora import process
from fplora.check.captions import caption_problems
from fplora.datasets.records import RecordCache
from fplora.jobs.context import Job
from fplora.jobs.rehearse import gate
from fplora.musubi.names import GENERATE_OUTPUTS, GENERATE_PROMPT_ERROR, GenerateOutput
from fplora.problems import Problem, UserError, display_path, plural
from fplora.render import commands
from fplora.runs.infer_folders import (
    GENERATE_LOG,
    Pair,
    begin_run,
    collisions,
    folder_problem,
    infer_settings,
    log_header,
    save_dir_name,
    save_root,
    write_record,
)
from fplora.runs.loras import Choice, choose_loras
from fplora.runs.manifest import now


def command_line(spec: Path, loras: list[str], multipliers: list[str]) -> str:
    """The `fplora infer` command that makes a folder, as its fplora-infer.json records it."""
    argv = ["fplora", "infer", display_path(spec)]
    argv += [word for given in loras for word in ("--lora", given)]
    argv += [word for given in multipliers for word in ("--multiplier", str(given))]
    return shlex.join(argv)


def _numbers(words: list[str] | list[float], key: str) -> list[float]:
    """Multipliers as given: numbers, or `--multiplier` words, each one or several separated by
    commas (`--lora` combines with commas, so `--multiplier 1.0,1.2` is typed too)."""
    numbers = []
    for word in words:
        for part in word.split(",") if isinstance(word, str) else [str(word)]:
            try:
                numbers.append(float(part))
            except ValueError:
                raise UserError(
                    Problem(
                        "command line",
                        None,
                        key,
                        f"{part.strip()!r} is not a number",
                        "e.g. --multiplier 1.2; for several, repeat it or separate them with commas"
                        " (--multiplier 1.0,1.2)",
                    )
                ) from None
    return numbers


def multipliers_to_run(values: list[str] | list[float], key: str) -> list[float]:
    """Positive, finite, each value once (`1.2` and `1.20` are one folder, so one run)."""
    values = _numbers(values, key)
    for value in values:
        if not math.isfinite(value):
            raise UserError(Problem("command line", None, key, f"{value} is not a finite number"))
        if value <= 0:
            raise UserError(Problem("command line", None, key, "must be positive"))
    return list(dict.fromkeys(float(v) for v in values))


def _explain(log: Path, start: int = 0) -> str:
    """The log line that says why a prompt produced no output, if there is one.

    Only what this run wrote (from byte `start`): runs into the same folder append to one log.
    """
    try:
        with log.open("rb") as handle:
            handle.seek(start)
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line.strip() for line in lines if GENERATE_PROMPT_ERROR in line]
    return errors[0] if errors else (lines[-1].strip() if lines else "")


def _new_files(folder: Path, kind: GenerateOutput, before: set[Path]) -> list[Path]:
    return sorted(set(folder.glob(kind.glob)) - before)


def _pairs(job: Job, choice: Choice, multipliers: list[float]) -> list[Pair]:
    """Every (checkpoint, multiplier) with its folder and command, the memo's way of comparing."""
    spec, paths = job.plan.spec, job.plan.paths
    root = save_root(spec)
    prompts_file = job.plan.files.get(paths.infer_prompts, "")
    pairs = []
    for checkpoint in choice.loras:
        for multiplier in multipliers:
            save_path = root / save_dir_name(spec.version, checkpoint, multiplier)
            argv = commands.generate(
                spec, paths, job.python, lora=checkpoint.path, multiplier=multiplier, save_path=save_path
            )
            settings = infer_settings(prompts_file, argv)
            pairs.append(
                Pair(
                    checkpoint, multiplier, save_path, argv, settings, choice.identities.get(checkpoint.path)
                )
            )
    return pairs


def _check_folders(pairs: list[Pair]) -> list[Problem]:
    """Refuse (UserError) folders that would mix LoRAs; return the notes about the others."""
    problems, notes = collisions(pairs), []
    for pair in pairs:
        refusal, folder_note = folder_problem(pair)
        problems += [refusal] if refusal else []
        notes += [folder_note] if folder_note else []
    if problems:
        raise UserError(problems)
    return notes


SWAP_TRAP = (
    "musubi-tuner's generate script loses every prompt after the first when DiT blocks are swapped"
    " (seen at 30c658c4 on an H200: 'mat2 is on cpu')"
)


def uses_sweep(sweep: bool | None, cells: int, *, swapped_prompts: bool = False) -> bool:
    """The sweep worker for a grid of two cells or more (it loads the models once for all of them),
    and for one cell whose several prompts would share a DiT with swapped blocks (`SWAP_TRAP`: the
    worker loads the DiT again for each prompt); separate generate processes otherwise.
    `--sweep`/`--no-sweep` decide instead."""
    return sweep if sweep is not None else cells > 1 or swapped_prompts


def swaps_several_prompts(job: Job) -> bool:
    """Whether several prompts would share one DiT with swapped blocks (`SWAP_TRAP`)."""
    return commands.infer_blocks_to_swap(job.plan.spec) > 0 and len(job.plan.infer_prompts) > 1


def swap_trap_warning(job: Job) -> Problem:
    """`--no-sweep` keeps several prompts on a swapping DiT: at the line that set the swap."""
    spec = job.plan.spec
    where = ("infer" if spec.infer.blocks_to_swap is not None else "train", "blocks_to_swap")
    return spec.problem(
        where,
        f"{SWAP_TRAP}; with --no-sweep only prompt 1 of {len(job.plan.infer_prompts)} is expected to be made",
        "drop --no-sweep (fplora's worker loads the DiT again for each prompt), or set"
        " infer.blocks_to_swap: 0 where the DiT fits",
        severity="warning",
    )


def check_captions(job: Job, *, strict: bool) -> None:
    """Written-out prompts near a training caption are errors (UserError) when strict; as warnings,
    `check_spec` (run by every job) has printed them already."""
    if not strict:
        return
    records = job.plan.records or RecordCache(job.plan.spec)
    problems = caption_problems(job.plan.spec, records, strict=True)
    if problems:
        raise UserError(problems)


def run_infer(
    job: Job,
    *,
    loras: list[str],
    multipliers: list[float],
    command: str = "fplora infer",
    sweep: bool | None = None,
    no_rehearse: bool,
    redo: bool = False,
    strict_captions: bool = False,
) -> int:
    """Every (LoRA, multiplier) cell: in one sweep worker or one generate process each (`uses_sweep`);
    every LoRA and folder is checked before anything starts, the rehearsal (`jobs.rehearse.gate`)
    included: a mistyped `--lora` costs no half minute of rehearsing.

    `multipliers` come through `multipliers_to_run` (finite, positive, each once). Only a sweep skips
    cells already made (`redo` makes them again): separate runs are the comparison, and run as asked."""
    spec = job.plan.spec
    check_captions(job, strict=strict_captions)
    choice = choose_loras(spec, loras, dry_run=job.dry_run, run=job.run)
    job.report(choice.notes)
    pairs = _pairs(job, choice, multipliers)
    job.report(_check_folders(pairs))
    swapped = swaps_several_prompts(job)
    if swapped and sweep is False:
        job.report([swap_trap_warning(job)])
    if gate(job, skip=no_rehearse):
        return 1
    if uses_sweep(sweep, len(pairs), swapped_prompts=swapped):
        from fplora.jobs.sweep import run_sweep

        # one cell sent to the worker only for the swap trap runs as asked, as a separate run would
        only_for_swap = sweep is None and len(pairs) == 1
        return run_sweep(job, pairs, command=command, redo=redo or only_for_swap)
    several = len(choice.loras) > 1
    failed = 0
    shown_lora = None
    for pair in pairs:
        if not job.dry_run and shown_lora != pair.checkpoint.path:
            shown_lora = pair.checkpoint.path
            job.say(
                f"LoRA {display_path(pair.checkpoint.path)} ({pair.checkpoint.label}),"
                f" {plural(len(job.plan.infer_prompts), 'prompt')}"
            )
        job.show(pair.argv)
        if not job.dry_run:
            what = (
                f"{pair.checkpoint.label} multiplier {pair.multiplier}"
                if several
                else f"multiplier {pair.multiplier}"
            )
            failed += not _generate(job, pair, command, what)
    if len(pairs) > 1 and not job.dry_run:
        job.say(
            f"{len(pairs) - failed} of {len(pairs)} generate runs wrote every file",
            "red" if failed else "green",
        )
    return 1 if failed else 0


def _generate(job: Job, pair: Pair, command: str, what: str) -> bool:
    """Run one generate process into its folder, recorded in the folder's record and log; True when
    it wrote every file expected of it (the pinned script exits 0 even when every prompt failed)."""
    save_path = pair.save_path
    outputs = GENERATE_OUTPUTS[job.plan.spec.infer.output_type]
    expected_count = len(job.plan.infer_prompts)
    record, run = begin_run(pair, command)
    before = {kind: set(save_path.glob(kind.glob)) for kind in outputs}
    log = save_path / GENERATE_LOG
    start = log_header(log, command, pair)
    result = process.run(pair.argv, log=log)
    written = {kind: _new_files(save_path, kind, before[kind]) for kind in outputs}
    run.update(ended=now(), exit_code=result.returncode, files=[p.name for k in outputs for p in written[k]])
    write_record(save_path, record)
    by_seed = {line.seed: line for line in job.plan.infer_prompts}
    shown = outputs[-1]
    for path in written[shown]:
        match = shown.seed_re.match(path.name)
        prompt = by_seed.get(int(match.group(1))) if match else None
        job.say(f"  {display_path(path)}" + (f"  ← {prompt.text[:60]}" if prompt else ""))
    if result.returncode == 0 and all(len(files) >= expected_count for files in written.values()):
        counts = ", ".join(plural(len(written[kind]), kind.noun) for kind in reversed(outputs))
        job.say(f"{what}: {counts} in {display_path(save_path)}")
        return True
    short = ", ".join(f"{len(written[k])} of {plural(expected_count, k.noun)}" for k in reversed(outputs))
    job.say(f"{what}: {short} written (exit {result.returncode}); log: {display_path(log)}", "red")
    reason = _explain(log, start)
    if reason:
        job.say(f"  {reason}", "red")
    return False
