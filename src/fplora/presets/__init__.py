"""GPU presets: `gpu: auto | h200 | h100-80g | a6000-48g | 4090-24g` in the spec, or `--gpu`.

A preset picks the micro-batch and gradient accumulation (keeping the effective batch the spec asks
for), `blocks_to_swap`, fp8 base weights, gradient checkpointing, `split_attn` and (where measured)
torch.compile for the spec's resolution and number of control images, from measurements (`measurements.json`,
docs/presets.md) or, for GPUs not measured, from a memory model fitted to them. Whatever the spec writes
itself wins; what the preset chose, kept or could not fit is returned as notes for the command to print.

How the batch is read: with a preset, `batch_size × gradient_accumulation_steps` (× processes) is
the effective batch asked for, and the preset splits it into micro-batch × accumulation for the GPU.
Writing `gradient_accumulation_steps` (or a dataset's own `batch_size`) pins the split as written.

`auto` asks nvidia-smi (or, without it, the musubi-tuner Python, whose answer the project's `.fplora/`
and the user's cache folder remember) for the GPU's name and memory; fplora never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fplora.presets.choose import Choice, Pinned, choose, predicted_peak, shape_factor
from fplora.presets.detect import AUTO, Detected, detect, match
from fplora.presets.table import Gpu, table
from fplora.problems import Problem, UserError, note, plural, yaml_value
from fplora.spec import revalidate
from fplora.spec.models import Spec, width_height
from fplora.spec.rules.combinations import NO_VARLEN, eval_batch
from fplora.state import project_state
from fplora.suggest import did_you_mean

__all__ = ["Applied", "Choice", "Detected", "apply", "detect", "preset_names"]


def preset_names() -> list[str]:
    return [AUTO, *table().gpus]


@dataclass
class Applied:
    """The spec with the preset's settings in place, what was chosen, and what to tell the user."""

    spec: Spec
    choice: Choice | None = None
    notes: list[Problem] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [problem.message for problem in self.notes]


def _where(spec: Spec, given: str | None) -> tuple[str | None, str]:
    if given is not None:
        return given, "--gpu"
    return spec.gpu, "gpu"


def _meant(name: str) -> str:
    """ "did you mean" for a GPU written as it is sold (`H100`, `RTX 4090`): the preset named after that
    card comes first, since by spelling alone `h100` is closer to `h200` than to `h100-80g`."""
    word = name.lower().replace("rtx", "").strip(" -_")
    named = [preset for preset in preset_names() if preset.split("-")[0] == word]
    if named:
        return f"did you mean '{named[0]}'?"
    sold = _by_card(name)
    if sold is not None:
        return f"did you mean '{sold.key}' ({sold.label})?"
    return did_you_mean(word, set(preset_names()))


def _squeezed(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _by_card(name: str) -> Gpu | None:
    """The preset whose cards include one written as sold or as nvidia-smi reports it (`L40S`,
    `RTX 6000 Ada`, `NVIDIA RTX 6000 Ada Generation`, `3090`), spaces and case aside."""
    word = _squeezed(name)
    if len(word) < 3:
        return None
    for gpu in table().gpus.values():
        for card in map(_squeezed, gpu.names):
            if word in card or card in word:
                return gpu
    return None


def _gpu(spec: Spec, name: str, key: str, python: str | None) -> tuple[Gpu | None, list[Problem]]:
    known = table().gpus
    if name != AUTO and name not in known:
        hint = _meant(name) or f"use one of {', '.join(preset_names())}"
        if key == "--gpu":
            raise UserError(Problem("command line", None, "--gpu", f"no preset {name!r}", hint))
        raise UserError(spec.problem(("gpu",), f"no preset {name!r}", hint))
    if name != AUTO:
        return known[name], []
    found = detect(python, project_state(spec.path))
    if found is None:
        return None, [
            note(
                "gpu auto: no GPU found here (no nvidia-smi, no CUDA in the musubi-tuner Python); the"
                " spec's own settings (and without_preset:) are used — name a preset (--gpu h100-80g) to"
                " plan for another machine",
            )
        ]
    gpu = match(found)
    kind = f"preset {gpu.key}" if gpu.key != AUTO else "no preset for it: modelled from its memory"
    return gpu, [note(f"gpu auto: {found.name}, {found.memory_mib:,} MiB ({found.how}): {kind}")]


def _pinned(spec: Spec) -> tuple[Pinned, bool]:
    """What the spec wrote itself, and whether it pins the batch split."""
    train = spec.train
    split = spec.written(("train", "gradient_accumulation_steps")) or any(
        d.batch_size is not None for d in spec.datasets
    )
    fp8_written = spec.written(("train", "fp8_base")) or spec.written(("train", "fp8_scaled"))
    return (
        Pinned(
            # the largest dataset batch bounds the memory
            batch=max(spec.dataset_value(i, "batch_size") for i in range(len(spec.datasets)))
            if split
            else None,
            blocks_to_swap=(train.blocks_to_swap or 0) if spec.written(("train", "blocks_to_swap")) else None,
            gradient_checkpointing=train.gradient_checkpointing
            if spec.written(("train", "gradient_checkpointing"))
            else None,
            fp8=(train.fp8_base and train.fp8_scaled) if fp8_written else None,
            compile=train.compile if spec.written(("train", "compile")) else None,
            split_attn=train.split_attn
            if spec.written(("train", "split_attn"))
            else _split_attn_needed(spec),
        ),
        split,
    )


def _split_attn_needed(spec: Spec) -> bool | None:
    """True where a setting the spec writes needs split_attn on, so that a preset never turns it off
    under it: `fplora eval` at a batch above 1 with an attention without a var-len kernel (sdpa)
    fails without it at its first forward pass (the rule in `spec/rules/combinations.py`)."""
    if eval_batch(spec) and spec.train.attention in NO_VARLEN:
        return True
    return None


def _describe(choice: Choice) -> str:
    swap = f"blocks_to_swap {choice.blocks_to_swap}" if choice.blocks_to_swap else "no block swap"
    ckpt = "gradient checkpointing" if choice.gradient_checkpointing else "no gradient checkpointing"
    fp8 = ", fp8_base + fp8_scaled" if choice.fp8 else ""
    accumulation = f" × {choice.accumulation} accumulation steps" if choice.accumulation > 1 else ""
    compiled = (
        f", torch.compile (first step ~{choice.first_step_extra_s:.0f} s longer)"
        if choice.compile and choice.first_step_extra_s
        else ", torch.compile"
        if choice.compile
        else ""
    )
    split = "" if choice.split_attn else ", split_attn off (batch 1 crops the caption's padding)"
    return f"batch {choice.batch}{accumulation}, {swap}, {ckpt}{fp8}{compiled}{split}"


def _basis(choice: Choice) -> str:
    peak = f"peak ~{choice.peak_mib:,.0f} of {choice.memory_mib:,} MiB ({choice.headroom:.0%} free)"
    if choice.expected_peak_mib is not None:  # compiled: its own peak, and the bound that must fit
        expected = choice.expected_peak_mib
        free = 1 - expected / choice.memory_mib
        peak = (
            f"peak ~{expected:,.0f} of {choice.memory_mib:,} MiB ({free:.0%} free;"
            f" ~{choice.peak_mib:,.0f} without compile's saving, which must fit past the shapes compile was"
            " measured at)"
        )
    if choice.limit:
        peak += f"; {choice.limit}"
    if choice.basis == "measured" and choice.row is not None:
        source = table().sources[choice.row.source]
        speed = f", {choice.s_per_step:g} s per micro-step" if choice.s_per_step else ""
        row = choice.row
        if choice.moved:
            ref_w, ref_h, ref_c = table().reference
            controls = ref_c if row.controls is None else row.controls
            return (
                f"measured at {row.width or ref_w}x{row.height or ref_h} with"
                f" {plural(controls, 'control image')} ({row.source}, {source['date']}), moved to this shape"
                f" by the memory model: {peak}{speed}"
            )
        return f"measured ({choice.row.source}, {source['date']}): {peak}{speed}"
    return f"modelled from the H200/H100 measurements, not measured on this GPU: {peak}"


def apply(spec: Spec, given: str | None = None, python: str | None = None) -> Applied:
    """The spec with its GPU preset applied (`given` is `--gpu`, which wins over the spec's `gpu`)."""
    name, key = _where(spec, given)
    if name is None:
        return Applied(spec)
    gpu, notes = _gpu(spec, name, key, python)
    if gpu is None:
        return Applied(spec, None, notes)
    pinned, split = _pinned(spec)
    processes = spec.launch.num_processes // max(spec.launch.num_machines, 1)
    per_process = (pinned.batch or spec.data.batch_size) * spec.train.gradient_accumulation_steps
    width, height = width_height(spec.data.resolution)
    of = spec.one_frame
    shape = shape_factor(
        width, height, len(of.clean_indices), no_post=of.no_post, no_2x=of.no_2x, no_4x=of.no_4x
    )

    def choice_for(pins: Pinned) -> Choice | None:
        return choose(
            gpu.key,
            gpu.label,
            gpu.memory_mib,
            effective=per_process,
            shape=shape,
            processes=processes,
            measured=gpu.measured,
            pinned=pins,
        )

    choice = choice_for(pinned)
    label = gpu.key if gpu.key != AUTO else gpu.label
    if choice is None:
        train = spec.train
        peak = predicted_peak(
            train.gradient_checkpointing,
            spec.data.batch_size,
            train.blocks_to_swap or 0,
            train.fp8_base and train.fp8_scaled,
            shape,
            processes,
            train.compile,
            train.split_attn,
        )
        notes.append(
            Problem(
                _shown(spec),
                None,
                key,
                *_no_choice(label, gpu.memory_mib, peak, width, height, pinned),
                severity="warning",
            )
        )
        return Applied(spec, None, notes)
    updated = _revalidated(_updated(spec, choice, split), label)
    notes.append(note(f"gpu {label}: {_describe(choice)} — {_basis(choice)}"))
    if name != AUTO and (smaller := _smaller_card_here(spec, gpu, choice, key)) is not None:
        notes.append(smaller)
    # a pinned split_attn is worth a note only where the preset would have chosen otherwise
    free = choice_for(replace(pinned, split_attn=None)) if pinned.split_attn is not None else None
    mattered = free is not None and free.split_attn != pinned.split_attn
    notes.extend(note(f"gpu {label}: {text}") for text in _kept(spec, choice, pinned, split, mattered))
    return Applied(updated, choice, notes)


def _smaller_card_here(spec: Spec, gpu: Gpu, choice: Choice, key: str) -> Problem | None:
    """A warning where a named preset (`gpu: h100-80g`, `--gpu`) plans a peak this machine's GPU, as
    nvidia-smi reports it, cannot hold: a spec copied from a bigger card runs out of memory after the
    models load. Only nvidia-smi is asked (no torch probe): without it, nothing is said."""
    found = detect()
    peak = choice.expected_peak_mib or choice.peak_mib
    if found is None or found.memory_mib >= peak:
        return None
    here = match(found)
    instead = f" (here: {here.key})" if here.key != AUTO else ""
    message = (
        f"{gpu.key} plans for {gpu.label}, but this machine's GPU is {found.name} with"
        f" {found.memory_mib:,} MiB: the preset's peak ~{peak:,.0f} MiB does not fit it"
    )
    fix = f"write gpu: auto{instead}, or keep this preset to plan for that card"
    if key == "--gpu":
        return Problem("command line", None, "--gpu", message, fix, "warning")
    return spec.problem(("gpu",), message, fix, "warning")


def _pins(pinned: Pinned) -> str:
    """The settings a spec pinned, as its keys say them (`blocks_to_swap 6, compile true`)."""
    values = {
        "batch_size": pinned.batch,
        "blocks_to_swap": pinned.blocks_to_swap,
        "gradient_checkpointing": pinned.gradient_checkpointing,
        "fp8_base": pinned.fp8,
        "compile": pinned.compile,
        "split_attn": pinned.split_attn,
    }
    return ", ".join(f"{key} {yaml_value(value)}" for key, value in values.items() if value is not None)


def _no_choice(
    label: str, memory: int, peak: float, width: int, height: int, pinned: Pinned
) -> tuple[str, str]:
    """Why no preset applies (message, fix): the spec's own settings do not fit the card, or
    they fit but no measured row and no modelled setting keeps what the spec pins (the model never
    combines recomputation off with a block swap, nor chooses torch.compile), so they are used as
    written, without a measured time."""
    limit = memory * (1 - table().model.headroom)
    if peak > limit:
        return (
            f"{label}: nothing fits {memory:,} MiB with 5 % headroom at {width}x{height} with the"
            f" settings the spec writes (as written: ~{peak:,.0f} MiB predicted)",
            "lower the resolution or the batch, or let the preset choose blocks_to_swap and"
            " gradient_checkpointing (remove them from the spec)",
        )
    return (
        f"{label}: no measured or modelled setting keeps what the spec pins ({_pins(pinned)}) at"
        f" {width}x{height}, so the preset leaves them as written (~{peak:,.0f} of {memory:,} MiB"
        " predicted: it fits) and gives no time estimate",
        "to let the preset choose, remove the pinned keys (or set them to null in a spec that extends"
        " another)",
    )


def _shown(spec: Spec) -> str:
    from fplora.problems import display_path

    return display_path(spec.path)


def _kept(spec: Spec, choice: Choice, pinned: Pinned, split: bool, split_attn_mattered: bool) -> list[str]:
    """What the spec pinned, each with the line that pinned it and how to give it back to the
    preset; and what a `null` gave back (`train.blocks_to_swap: 20 (configs/base.yaml:40), null at
    configs/v1.yaml:5: chosen by the preset`). A pinned split_attn is said only where the preset
    would have chosen otherwise (projects from before it chose split_attn all pin it)."""
    kept = []
    if split:
        kept.append(
            f"batch {choice.batch} × {choice.accumulation} kept as written"
            " (gradient_accumulation_steps or a dataset's batch_size pins the split)"
        )
    shown_spec = _shown(spec)
    for key, value in (
        ("blocks_to_swap", pinned.blocks_to_swap),
        ("gradient_checkpointing", pinned.gradient_checkpointing),
        ("fp8_base", spec.train.fp8_base if spec.written(("train", "fp8_base")) else None),
        ("fp8_scaled", spec.train.fp8_scaled if spec.written(("train", "fp8_scaled")) else None),
        ("compile", pinned.compile),
        (
            "split_attn",
            pinned.split_attn if split_attn_mattered and spec.written(("train", "split_attn")) else None,
        ),
    ):
        if value is not None:
            at = spec.written_at(("train", key))
            free = (
                "remove it to let the preset choose"
                if at.rpartition(":")[0] == shown_spec
                else f"`{key}: null` under train: in {shown_spec} lets the preset choose"
            )
            kept.append(f"train.{key} {yaml_value(value)} kept as written at {at} ({free})")
    if split_attn_mattered and not spec.written(("train", "split_attn")):
        kept.append(
            f"split_attn kept on: eval.batch_size {spec.eval.batch_size if spec.eval else 1} needs it with"
            f" attention {spec.train.attention} (eval.batch_size: 1 lets the preset turn it off)"
        )
    for key_path, was in spec.unpinned.items():
        kept.append(f"{'.'.join(map(str, key_path))}: {was}: chosen by the preset")
    return kept


def _revalidated(updated: Spec, label: str) -> Spec:
    """The patched spec validated again (`model_copy(update=)` skips validation): a preset whose
    choice breaks a rule is refused here, saying so, rather than on the GPU."""
    try:
        return revalidate(updated)
    except UserError as error:
        raise UserError(
            replace(problem, message=f"{problem.message} (as the gpu preset {label} set it)")
            for problem in error.problems
        ) from None


def _updated(spec: Spec, choice: Choice, split: bool) -> Spec:
    """A copy of `spec` with the preset's settings where the spec did not write its own."""
    train_update: dict[str, object] = {}
    if not split:
        train_update["gradient_accumulation_steps"] = choice.accumulation
    if not spec.written(("train", "blocks_to_swap")):
        train_update["blocks_to_swap"] = choice.blocks_to_swap or None
    if not spec.written(("train", "gradient_checkpointing")):
        train_update["gradient_checkpointing"] = choice.gradient_checkpointing
    if not (spec.written(("train", "fp8_base")) or spec.written(("train", "fp8_scaled"))):
        train_update["fp8_base"] = choice.fp8
        train_update["fp8_scaled"] = choice.fp8
    if not spec.written(("train", "compile")):
        train_update["compile"] = choice.compile
    if not spec.written(("train", "split_attn")):
        train_update["split_attn"] = choice.split_attn
    data = spec.data if split else spec.data.model_copy(update={"batch_size": choice.batch})
    return spec.model_copy(update={"train": spec.train.model_copy(update=train_update), "data": data})
