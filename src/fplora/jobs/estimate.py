"""What `fplora train --dry-run` says before the first paid minute: steps per epoch, and from the
preset's measured seconds per step the wall time to `max_train_steps` and to the next saves, and what
that costs at the machine's price.

Seconds per step come only from measurements (`presets/measurements.json`, scaled to the spec's
micro-batch and shape); a modelled preset, or no preset, gives steps but no time. The fixed costs
are the ones measured on an H100 (docs/gpu-e2e.md): about two minutes from launch to the first step,
about 12 s per training sample image (5 s of it a sleep in musubi-tuner's sampler), about 2 s per
LoRA plus state save.
"""

from __future__ import annotations

import math

from fplora.check.captions import estimated_tokens
from fplora.datasets import split
from fplora.plan import Plan
from fplora.presets import Choice, flops
from fplora.problems import plural
from fplora.spec.models import width_height

START_S = 120.0  # process start → first step, with sample prompts (74-117 s measured)
SAMPLE_S = 12.0  # per sample image during training (11.5 s measured, 5 s of it a fixed sleep)
SAVE_S = 2.1  # LoRA (1.2 s) + state (0.9 s) save


def steps_per_epoch(plan: Plan) -> int | None:
    """Optimizer steps per epoch as musubi-tuner counts them: batches of every dataset (records ×
    repeats / batch, rounded up; buckets of other sizes can add one each), split across processes,
    divided by gradient accumulation. Only training records count: those held out for evaluation
    are not in the dataset musubi-tuner trains on. None when a dataset's records cannot be read."""
    spec = plan.spec
    if plan.records is None:
        return None
    training = split.training_records(spec, plan.records)
    batches = 0
    for index in range(len(spec.datasets)):
        records = training(index)
        if records.problems and not records.items:
            return None
        samples = len(records.items) * spec.dataset_value(index, "num_repeats")
        batches += math.ceil(samples / spec.dataset_value(index, "batch_size"))
    per_process = math.ceil(batches / spec.launch.num_processes)
    return max(1, math.ceil(per_process / spec.train.gradient_accumulation_steps))


def _count(value: float) -> str:
    """`2`, `2.5`, `3,334`: never `3.33e+03`, what `.3g` makes of a run of thousands of epochs."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def duration(seconds: float) -> str:
    """`2 h 05 min`, `14 min`, `40 s`."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def estimate(plan: Plan, choice: Choice | None, *, price_per_hour: float | None = None) -> list[str]:
    """The lines `train --dry-run` prints on stderr."""
    spec = plan.spec
    train = spec.train
    lines = []
    per_epoch = steps_per_epoch(plan)
    if per_epoch is not None:
        epochs = train.max_train_steps / per_epoch
        lines.append(
            f"estimate: {plural(per_epoch, 'step')} per epoch"
            f" (effective batch {spec.effective_batch() or '?'});"
            f" max_train_steps {train.max_train_steps} is {plural(epochs, 'epoch', shown=_count(epochs))}"
        )
    if choice is None or choice.s_per_step is None:
        if choice is None:
            why = "no GPU preset (gpu: / --gpu)"
        elif choice.basis == "modelled":
            why = f"the {choice.gpu} preset is modelled, not measured"
        else:
            why = "the resolution and control images are far from the measured 512x768 with 2"
        lines.append(f"estimate: no time: {why}, so there is no measured s/step for these settings")
        return lines
    step_s = choice.s_per_step * choice.accumulation
    prompts = len(plan.sample_prompts)
    every = spec.sample.every_n_steps if prompts else None

    def wall(steps: int) -> float:
        samples = (steps // every if every else 0) + (1 if prompts and spec.sample.at_first else 0)
        saves = steps // train.save_every_n_steps if train.save_every_n_steps else 0
        start = START_S + choice.first_step_extra_s  # compiling, where the preset compiles
        return start + steps * step_s + samples * prompts * SAMPLE_S + saves * SAVE_S

    price = price_per_hour if price_per_hour is not None else spec.price_per_hour
    total = wall(train.max_train_steps)
    cost = (
        f", ${total / 3600 * price:,.2f} at ${price:g}/h"
        if price
        else " (no --price-per-hour or price_per_hour)"
    )
    scaled = ", scaled to this shape" if choice.moved else ""
    lines.append(
        f"estimate: {step_s:.3g} s/step ({choice.s_per_step:g} s per micro-batch of {choice.batch}"
        f" × {choice.accumulation}, measured on {choice.gpu}{scaled}); to max_train_steps"
        f" {train.max_train_steps}: about {duration(total)}{cost}"
    )
    if train.save_every_n_steps:
        first = train.save_every_n_steps
        saves = [first * k for k in (1, 2) if first * k <= train.max_train_steps]
        shown = ", ".join(f"step {step} after ~{duration(wall(step))}" for step in saves)
        if shown:
            lines.append(
                f"estimate: saves at {shown}, then every {plural(first, 'step')}"
                f" (~{duration(first * step_s)})"
            )
    if (utilisation := _mfu(plan, choice)) is not None:
        lines.append(utilisation)
    extra = choice.first_step_extra_s
    compiling = f", ~{extra:.0f} s of compiling ({choice.gpu.upper()})" if choice.compile and extra else ""
    lines.append(
        f"estimate: includes ~2 min start-up{compiling}, ~12 s per training sample image and ~2 s per"
        " save, as measured on an H100 (docs/gpu-e2e.md)"
    )
    return lines


def _caption_tokens(plan: Plan) -> int:
    """The training captions' mean LLaMA tokens (estimated, capped at the encoder's 256), else 20
    (the GPU harness's captions, which the measured rows used)."""
    if plan.records is None:
        return 20
    training = split.training_records(plan.spec, plan.records)
    counts = [
        min(estimated_tokens(record.caption)[0], 256)
        for index in range(len(plan.spec.datasets))
        for record in training(index).items
        if record.caption
    ]
    return round(sum(counts) / len(counts)) if counts else 20


def _mfu(plan: Plan, choice: Choice) -> str | None:
    """Model FLOPs utilisation of the estimated s/step against the card's dense bf16 peak
    (presets/flops.py: the 3x convention, recomputation not counted)."""
    if choice.s_per_step is None or choice.gpu not in flops.PEAK_BF16:
        return None
    spec = plan.spec
    width, height = width_height(spec.data.resolution)
    of = spec.one_frame
    tok = flops.tokens(
        width,
        height,
        len(of.clean_indices),
        no_post=of.no_post,
        no_2x=of.no_2x,
        no_4x=of.no_4x,
        text_tokens=_caption_tokens(plan),
    )
    per_sample = flops.per_sample(tok, lora_dim=spec.train.network.dim).convention
    rate = choice.batch / choice.s_per_step
    used = flops.mfu(rate, per_sample, choice.gpu) or 0.0
    return (
        f"estimate: model FLOPs utilisation ~{used:.0%} of the {choice.gpu.upper()}'s"
        f" {flops.PEAK_BF16[choice.gpu] / 1e12:.0f} TFLOP/s dense bf16 ({per_sample / 1e12:.0f} TFLOP"
        f" per sample at {width}x{height}, {tok.total:,} tokens; forward + backward as 3x the forward,"
        " recomputation not counted)"
    )
