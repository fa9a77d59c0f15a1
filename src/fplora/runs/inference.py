"""`fplora infer`: batch one-frame inference with a training checkpoint, judged by the images written.

The pinned `fpack_generate_video` exits 0 even when every prompt failed (an fp32 LoRA merged into
the bf16 DiT, for one), so success here means one new image per prompt in the output folder.
"""

from __future__ import annotations

from pathlib import Path

from fplora import process
from fplora.jobs import Job
from fplora.musubi.names import (
    GENERATE_IMAGE_GLOB,
    GENERATE_PROMPT_ERROR,
    GENERATE_SEED_RE,
    TRAINING_SAMPLE_DIR,
)
from fplora.problems import UserError, display_path
from fplora.render import commands
from fplora.runs.checkpoints import Checkpoint, expected, parse_step, resolve, same_step
from fplora.runs.manifest import foreign_run_note


def save_dir_name(version: str, checkpoint: Checkpoint, multiplier: float) -> str:
    """The memo's naming: `v8-step00005000-lm1.2`."""
    if checkpoint.step is not None:
        which = f"step{checkpoint.step:08d}"
    else:
        which = "final" if checkpoint.final else checkpoint.path.stem
    return f"{version}-{which}-lm{float(multiplier)}"


def _explain(log: Path, start: int = 0) -> str:
    """The log line that says why a prompt produced no image, if there is one.

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


def _checkpoint(job: Job, lora: str) -> Checkpoint:
    """The LoRA to use; a dry run before training shows the name the checkpoint will have."""
    spec = job.plan.spec
    try:
        chosen = resolve(spec.train.output_dir, spec.output_name, lora, "lora")
    except UserError:
        future = expected(spec.train.output_dir, spec.output_name, lora, "lora") if job.dry_run else None
        if future is None:
            raise
        job.console.print(f"dry run: {display_path(future.path)} does not exist yet", highlight=False)
        return future
    if parse_step(lora) is not None:
        for other in same_step(spec.train.output_dir, spec.output_name, chosen):
            job.console.print(
                f"[yellow]note: {chosen.label} also exists in an older segment: {display_path(other.path)};"
                f" using the newest, {display_path(chosen.path)} (give a path for the other)[/]",
                highlight=False,
            )
    return chosen


def _checkpoints(job: Job, loras: list[str]) -> list[Checkpoint]:
    """Every LoRA asked for, resolved before any process starts: a typo in the third is not found an
    hour into the first. Two words for the same file (`latest` and `step5000`) run it once."""
    found: dict[Path, Checkpoint] = {}
    for lora in loras:
        checkpoint = _checkpoint(job, lora)
        found.setdefault(checkpoint.path, checkpoint)
    return list(found.values())


def run_infer(job: Job, *, loras: list[str], multipliers: list[float]) -> int:
    """One generate process per (LoRA, multiplier), the memo's way of comparing checkpoints."""
    spec, paths = job.plan.spec, job.plan.paths
    note = foreign_run_note(spec.train.output_dir, spec.output_name, spec.path)
    if note:
        job.console.print(f"[yellow]{note}[/]", highlight=False)
    checkpoints = _checkpoints(job, loras)
    save_root = spec.infer.save_dir or spec.train.output_dir / TRAINING_SAMPLE_DIR
    expected = len(job.plan.infer_prompts)
    by_seed = {line.seed: line for line in job.plan.infer_prompts}
    several = len(checkpoints) > 1
    failed = 0
    for checkpoint in checkpoints:
        if not job.dry_run:
            job.console.print(
                f"LoRA {display_path(checkpoint.path)} ({checkpoint.label}), {expected} prompts",
                highlight=False,
            )
        for multiplier in multipliers:
            what = (
                f"{checkpoint.label} multiplier {float(multiplier)}"
                if several
                else f"multiplier {float(multiplier)}"
            )
            save_path = save_root / save_dir_name(spec.version, checkpoint, multiplier)
            argv = commands.generate(
                spec, paths, job.python, lora=checkpoint.path, multiplier=multiplier, save_path=save_path
            )
            job.show(argv)
            if job.dry_run:
                continue
            save_path.mkdir(parents=True, exist_ok=True)
            before = set(save_path.glob(GENERATE_IMAGE_GLOB))
            log = save_path / "generate.log"
            start = log.stat().st_size if log.exists() else 0
            result = process.run(argv, log=log)
            images = sorted(set(save_path.glob(GENERATE_IMAGE_GLOB)) - before)
            for image in images:
                match = GENERATE_SEED_RE.match(image.name)
                prompt = by_seed.get(int(match.group(1))) if match else None
                caption = f"  ← {prompt.text[:60]}" if prompt else ""
                job.console.print(f"  {display_path(image)}{caption}", highlight=False)
            if result.returncode != 0 or len(images) < expected:
                failed += 1
                reason = _explain(log, start)
                job.console.print(
                    f"[red]{what}: {len(images)} of {expected} images written"
                    f" (exit {result.returncode}); log: {display_path(log)}[/]",
                    highlight=False,
                )
                if reason:
                    job.console.print(f"[red]  {reason}[/]", highlight=False)
            else:
                job.console.print(f"{what}: {len(images)} images in {display_path(save_path)}")
    runs = len(checkpoints) * len(multipliers)
    if runs > 1 and not job.dry_run:
        style = "red" if failed else "green"
        job.console.print(f"[{style}]{runs - failed} of {runs} generate runs wrote every image[/]")
    return 1 if failed else 0
