"""Which batch split, block swap, checkpointing and fp8 to use on a GPU, from measurements first.

A measured GPU gets the measured configuration with the most samples per second that fits with the
headroom at the spec's shape (torch.compile included, where it was measured; rows that used options a
preset does not set, like TF32, are reported but never chosen); only when none fits (a larger
resolution, settings the spec pins) does it fall back to the memory model. A GPU nobody measured always
gets the model's answer, marked `modelled`. The effective batch is kept: the micro-batch is a divisor of
it and gradient accumulation makes up the rest, so the learning rate (which follows the effective batch)
is unchanged."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fplora.presets.table import Model, Row, table, tokens


@dataclass(frozen=True)
class Pinned:
    """Settings the spec wrote itself, which the preset must keep (None: the preset chooses)."""

    batch: int | None = None  # micro-batch per process, when the spec pins the split
    blocks_to_swap: int | None = None
    gradient_checkpointing: bool | None = None
    fp8: bool | None = None
    compile: bool | None = None
    # split_attn as the spec wrote it (None: the preset chooses): a row run without it serves only
    # specs that do not pin it on (batch 1 then crops the caption's padding: less memory and time);
    # a row run with it serves both, conservatively
    split_attn: bool | None = None


@dataclass(frozen=True)
class Choice:
    """What a preset chose, and from what."""

    gpu: str  # preset key, or "auto" for an unlisted GPU
    label: str
    memory_mib: int
    batch: int
    accumulation: int
    blocks_to_swap: int
    gradient_checkpointing: bool
    fp8: bool
    peak_mib: float  # predicted (or measured, at the reference shape) peak per process
    basis: str  # "measured" or "modelled"
    s_per_step: float | None  # measured (scaled to the shape and batch), None when modelled
    row: Row | None = None
    shape: float = 1.0  # per-sample memory and compute against the measured shape
    compile: bool = False  # only where it was measured
    # the peak to expect: the measured row's own (moved by the model), where `peak_mib` is the bound
    # that must fit (a compiled row moved past the tokens compile was measured at must fit without
    # compile's saving); None: `peak_mib`
    expected_peak_mib: float | None = None
    # where the memory model was found off by more than 2 % for these settings (data: model.limits)
    limit: str | None = None
    # musubi-tuner's split_attn: off only where a row measured without it at micro-batch 1 is chosen
    # (batch 1 then crops the caption's padding: the same attention over the real tokens, 8 % fewer
    # tokens through every linear layer); on for every other choice (sdpa needs it above batch 1)
    split_attn: bool = True

    @property
    def expected_peak(self) -> float:
        return self.peak_mib if self.expected_peak_mib is None else self.expected_peak_mib

    @property
    def moved(self) -> bool:
        """Whether the row was measured at another shape than the spec's (the model moved it here)."""
        return self.row is not None and self.row.shape(table().reference) != self.shape

    @property
    def first_step_extra_s(self) -> float:
        """What the first step costs beyond the others (compiling), as measured; 0 when modelled."""
        return self.row.first_step_extra_s if self.row is not None else 0.0

    @property
    def headroom(self) -> float:
        return 1 - self.peak_mib / self.memory_mib


def divisors(n: int) -> list[int]:
    """Micro-batches that split `n` evenly, largest first."""
    return [d for d in range(n, 0, -1) if n % d == 0]


def shape_factor(
    width: int, height: int, controls: int, *, no_post: bool = True, no_2x: bool = False, no_4x: bool = False
) -> float:
    """Per-sample memory and compute against the reference shape, in the DiT's tokens per sample
    (table.tokens: each control image is a latent of the target's size; the image embedding and the
    padded caption stay the same at every size)."""
    reference = tokens(*table().reference)
    return tokens(width, height, controls, no_post=no_post, no_2x=no_2x, no_4x=no_4x) / reference


def _row_peak(row: Row, batch: int, shape: float, processes: int) -> tuple[float, float]:
    """A measured row's peak moved to another shape, micro-batch and process count by the model,
    and the bound that must fit.

    A compiled row moves down to fewer tokens per micro-batch by the compiled model (checked from the
    house shape to 768x512 with one control: 1 % over, the safe side), but moved up it is bound by no
    less than the model's uncompiled peak: compile's memory does not grow in a line with the tokens
    (on the H100, 640x640 with two controls without split_attn, 3.7 % more tokens than the house
    shape, peaked 7.6 % over the line, at 78,053 MiB). At its own batch and shape a row's measured
    peak is the bound."""
    model = table().model
    assert row.peak_mib is not None
    row_tokens = row.batch * model.tokens(row.shape(table().reference), row.batch, row.split_attn)
    moved = batch * model.tokens(shape, batch, row.split_attn) - row_tokens
    peak = row.peak_mib + model.sample(row.gradient_checkpointing, row.compile) * moved
    if processes > 1 and row.processes == 1:
        peak += model.ddp
    if processes == 1 and row.processes > 1:
        peak -= model.ddp
    bound = peak
    if row.compile and moved > 0:
        uncompiled = model.peak(
            checkpointing=row.gradient_checkpointing,
            batch=batch,
            swap=row.blocks_to_swap,
            shape=shape,
            fp8=row.fp8,
            processes=processes,
            split_attn=row.split_attn,
        )
        bound = max(peak, uncompiled)
    return peak, bound


def _matches(row: Row, pinned: Pinned) -> bool:
    return (
        (pinned.blocks_to_swap is None or row.blocks_to_swap == pinned.blocks_to_swap)
        and (
            pinned.gradient_checkpointing is None
            or row.gradient_checkpointing == pinned.gradient_checkpointing
        )
        and (pinned.fp8 is None or row.fp8 == pinned.fp8)
        and (pinned.compile is None or row.compile == pinned.compile)
        and (pinned.split_attn is None or row.split_attn or not pinned.split_attn)
        and not row.options
        and row.superseded is None
        and not row.unreproduced
    )


def _from_rows(
    gpu: str, label: str, memory: int, effective: int, shape: float, processes: int, pinned: Pinned
) -> Choice | None:
    """The fastest measured configuration that fits: rows are ranked by samples per second at this
    shape (a row's rate moved by its tokens per sample); of rows with the same settings, the one
    measured nearest this batch and shape gives the numbers."""
    model = table().model
    limit = memory * (1 - model.headroom)
    # (rate here, (batch differs, distance in shape), choice)
    found: list[tuple[float, tuple[bool, float], Choice]] = []
    for row in table().rows:
        if (
            row.gpu != gpu
            or row.peak_mib is None
            or row.usable_s_per_step is None
            or not _matches(row, pinned)
        ):
            continue
        if row.compile and processes != row.processes:
            continue  # torch.compile under DDP (or alone, from a DDP row) was never run
        fitting = [d for d in divisors(effective) if d <= row.batch]
        batch = pinned.batch if pinned.batch is not None else (fitting[0] if fitting else 1)
        if not row.split_attn and batch != 1:
            continue  # without split_attn only batch 1 crops the padding; sdpa needs it above 1
        expected, peak = _row_peak(row, batch, shape, processes)
        if peak > limit:
            continue
        # compute grows with the tokens; far from the measured shape, fixed costs dominate: no time
        row_shape = row.shape(table().reference)
        here = model.tokens(shape, batch, row.split_attn)
        there = model.tokens(row_shape, row.batch, row.split_attn)
        s_per_step = (
            row.usable_s_per_step / (row.batch * there) * batch * here if 0.5 <= here / there <= 2 else None
        )
        moved = batch != row.batch or shape != row_shape
        choice = Choice(
            gpu,
            label,
            memory,
            batch,
            effective // batch,
            row.blocks_to_swap,
            row.gradient_checkpointing,
            row.fp8,
            peak,
            "measured",
            round(s_per_step, 3) if s_per_step else None,
            row,
            shape,
            row.compile,
            expected if expected != peak else None,
            _limit(row.gradient_checkpointing, row.split_attn, row.compile, batch * here) if moved else None,
            row.split_attn,
        )
        rate = (row.samples_per_s or 0.0) * there / here
        found.append(
            (rate * (0.999 if moved else 1), (batch != row.batch, abs(math.log(here / there))), choice)
        )
    # a row measured at the batch chosen beats the same settings scaled from another batch: time is
    # not linear in the batch where a part of it is per step (block swap: the H100's 8 with swap 20
    # ran 15.16 s/step, the 16's 23.98 halved says 11.99); and a row measured at this shape beats one
    # moved here from another (768x512 with one control: 0.448 s measured, 0.470 from 512x768)
    nearest: dict[tuple[object, ...], tuple[float, tuple[bool, float], Choice]] = {}
    for item in found:
        settings = _settings(item[2])
        if settings not in nearest or item[1] < nearest[settings][1]:
            nearest[settings] = item
    return max(nearest.values(), key=lambda item: item[0])[2] if nearest else None


def _settings(choice: Choice) -> tuple[object, ...]:
    return (
        choice.batch,
        choice.blocks_to_swap,
        choice.gradient_checkpointing,
        choice.fp8,
        choice.compile,
        choice.shape,
        choice.split_attn,
    )


def _limit(checkpointing: bool, split_attn: bool, compile: bool, tokens: float) -> str | None:
    found = table().model.limit(checkpointing, split_attn, compile, tokens)
    return None if found is None else f"the memory model is off by {found.error:+.1%} here: {found.why}"


def _from_model(
    gpu: str, label: str, memory: int, effective: int, shape: float, processes: int, pinned: Pinned
) -> Choice | None:
    """The memory model's answer: no recomputation if it fits without swapping (the faster lever on
    the H200), else checkpointing at the largest micro-batch that needs no more block swap than was
    measured (20), else the least swap at batch 1, else fp8 base weights. Never torch.compile: its
    time was measured on the H200 and the H100 only, its first step's cost with them."""
    model = table().model
    limit = memory * (1 - model.headroom)
    split = pinned.split_attn is not False

    def tokens(batch: int) -> float:
        return batch * model.tokens(shape, batch, split)

    def modelled(checkpointing: bool, batch: int, swap: int, fp8: bool) -> float:
        """The model's peak, grown by the miss where the model was measured to under-predict."""
        found = model.limit(checkpointing, split, False, tokens(batch))
        margin = 1 + max(found.error, 0.0) if found else 1.0
        return margin * model.peak(
            checkpointing=checkpointing,
            batch=batch,
            swap=swap,
            shape=shape,
            fp8=fp8,
            processes=processes,
            split_attn=split,
        )

    def swap_for(checkpointing: bool, batch: int, fp8: bool) -> int | None:
        peak = modelled(checkpointing, batch, 0, fp8)
        if pinned.blocks_to_swap is not None:
            swap = pinned.blocks_to_swap
        else:
            swap = max(0, -int(-(peak - limit) // model.per_block))
        return swap if peak - swap * model.per_block <= limit and swap <= model.max_blocks_to_swap else None

    def make(checkpointing: bool, batch: int, swap: int, fp8: bool) -> Choice:
        peak = modelled(checkpointing, batch, swap, fp8)
        return Choice(
            gpu,
            label,
            memory,
            batch,
            effective // batch,
            swap,
            checkpointing,
            fp8,
            peak,
            "modelled",
            None,
            None,
            shape,
            limit=_limit(checkpointing, split, False, tokens(batch)),
            split_attn=split,
        )

    batches = [pinned.batch] if pinned.batch is not None else divisors(effective)
    fp8_options = [pinned.fp8] if pinned.fp8 is not None else [False, True]
    for fp8 in fp8_options:
        if pinned.gradient_checkpointing is not True and not fp8:
            # without recomputation only batch 1-2 and no swap were ever measured
            for batch in batches:
                if batch <= 2 and swap_for(False, batch, False) == 0:
                    return make(False, batch, 0, False)
        if pinned.gradient_checkpointing is False:
            continue
        for cap in (model.measured_swap_up_to, model.max_blocks_to_swap):
            for batch in batches:
                swap = swap_for(True, batch, fp8)
                if swap is not None and swap <= cap:
                    return make(True, batch, swap, fp8)
    return None


def choose(
    gpu: str,
    label: str,
    memory: int,
    *,
    effective: int,
    shape: float,
    processes: int = 1,
    measured: bool = True,
    pinned: Pinned | None = None,
) -> Choice | None:
    """The settings for `effective` samples per optimizer step and process on this GPU, or None when
    nothing fits with the headroom (the spec's pinned settings included)."""
    pinned = pinned or Pinned()
    if measured:
        found = _from_rows(gpu, label, memory, effective, shape, processes, pinned)
        if found is not None:
            return found
    return _from_model(gpu, label, memory, effective, shape, processes, pinned)


def predicted_peak(
    checkpointing: bool,
    batch: int,
    swap: int,
    fp8: bool,
    shape: float,
    processes: int,
    compile: bool = False,
    split_attn: bool = True,
) -> float:
    """The model's peak for settings as they stand (to warn when a spec's own settings will not fit)."""
    model: Model = table().model
    return model.peak(
        checkpointing=checkpointing,
        batch=batch,
        swap=swap,
        shape=shape,
        fp8=fp8,
        processes=processes,
        split_attn=split_attn,
        compile=compile,
    )
