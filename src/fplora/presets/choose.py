"""Which batch split, block swap, checkpointing and fp8 to use on a GPU, from measurements first.

A measured GPU gets the measured configuration with the most samples per second that fits with the
headroom at the spec's shape (torch.compile included, where it was measured; rows that used options a
preset does not set, like TF32, are reported but never chosen); only when none fits (a larger
resolution, settings the spec pins) does it fall back to the memory model. A GPU nobody measured always
gets the model's answer, marked `modelled`. The effective batch is kept: the micro-batch is a divisor of
it and gradient accumulation makes up the rest, so the learning rate (which follows the effective batch)
is unchanged."""

from __future__ import annotations

from dataclasses import dataclass

from fplora.presets.table import Model, Row, table


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
    compile: bool = False  # only where it was measured: the memory model knows nothing of it
    # the peak to expect: the measured row's own (moved by the model), where `peak_mib` is the bound
    # that must fit (a compiled row must fit without compile's saving); None: `peak_mib`
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
    def first_step_extra_s(self) -> float:
        """What the first step costs beyond the others (compiling), as measured; 0 when modelled."""
        return self.row.first_step_extra_s if self.row is not None else 0.0

    @property
    def headroom(self) -> float:
        return 1 - self.peak_mib / self.memory_mib

    @property
    def fits(self) -> bool:
        return self.peak_mib <= self.memory_mib * (1 - table().model.headroom)


def divisors(n: int) -> list[int]:
    """Micro-batches that split `n` evenly, largest first."""
    return [d for d in range(n, 0, -1) if n % d == 0]


def shape_factor(width: int, height: int, controls: int) -> float:
    """Per-sample memory against the reference shape: tokens grow with the pixel area and with the
    number of control images (each is a latent of the target's size in one-frame training)."""
    ref_w, ref_h, ref_c = table().reference
    return (width * height) / (ref_w * ref_h) * (1 + controls) / (1 + ref_c)


def _row_peak(row: Row, batch: int, shape: float, processes: int) -> tuple[float, float]:
    """A measured row's peak moved to another shape, micro-batch and process count by the model,
    and the bound that must fit.

    A compiled row moved to another batch or shape is bound by no less than the model's uncompiled
    peak: compile's saving (11 GB at batch 1 without checkpointing) was measured at one shape and
    batch only. At its own batch and shape its measured peak is the bound."""
    model = table().model
    assert row.peak_mib is not None
    moved = batch * shape - row.batch * row.shape(table().reference)
    peak = row.peak_mib + model.per_sample[row.gradient_checkpointing] * moved
    if processes > 1 and row.processes == 1:
        peak += model.ddp
    if processes == 1 and row.processes > 1:
        peak -= model.ddp
    bound = peak
    if row.compile and (batch, shape) != (row.batch, row.shape(table().reference)):
        uncompiled = model.peak(
            checkpointing=row.gradient_checkpointing,
            batch=batch,
            swap=row.blocks_to_swap,
            shape=shape,
            fp8=row.fp8,
            processes=processes,
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
    """The fastest measured configuration that fits: rows are ranked by samples per second."""
    limit = memory * (1 - table().model.headroom)
    found: list[tuple[float, bool, Choice]] = []  # (rate, measured at this batch and shape, choice)
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
        s_per_step = (
            row.usable_s_per_step / (row.batch * row_shape) * batch * shape
            if 0.5 <= shape / row_shape <= 2
            else None
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
            _limit(row.gradient_checkpointing, row.split_attn) if moved else None,
            row.split_attn,
        )
        found.append(((row.samples_per_s or 0.0) * (0.999 if moved else 1), not moved, choice))
    # a row measured at the batch chosen beats the same settings scaled from another batch: time is
    # not linear in the batch where a part of it is per step (block swap: the H100's 8 with swap 20
    # ran 15.16 s/step, the 16's 23.98 halved says 11.99)
    exact = {_settings(choice) for _, at, choice in found if at}
    kept = [(rate, choice) for rate, at, choice in found if at or _settings(choice) not in exact]
    return max(kept, key=lambda item: item[0])[1] if kept else None


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


def _limit(checkpointing: bool, split_attn: bool) -> str | None:
    found = table().model.limit(checkpointing, split_attn)
    return None if found is None else f"the memory model is off by {found.error:+.1%} here: {found.why}"


def _from_model(
    gpu: str, label: str, memory: int, effective: int, shape: float, processes: int, pinned: Pinned
) -> Choice | None:
    """The memory model's answer: no recomputation if it fits without swapping (the faster lever on
    the H200), else checkpointing at the largest micro-batch that needs no more block swap than was
    measured (20), else the least swap at batch 1, else fp8 base weights. Never torch.compile: it
    was measured on one GPU only, and its memory is not in the model."""
    model = table().model
    limit = memory * (1 - model.headroom)
    split = pinned.split_attn is not False

    def margin(checkpointing: bool) -> float:
        """Where the model was measured to under-predict, the peak it must fit grows by that much."""
        found = model.limit(checkpointing, split)
        return 1 + max(found.error, 0.0) if found else 1.0

    def swap_for(checkpointing: bool, batch: int, fp8: bool) -> int | None:
        peak = margin(checkpointing) * model.peak(
            checkpointing=checkpointing, batch=batch, swap=0, shape=shape, fp8=fp8, processes=processes
        )
        if pinned.blocks_to_swap is not None:
            swap = pinned.blocks_to_swap
        else:
            swap = max(0, -int(-(peak - limit) // model.per_block))
        return swap if peak - swap * model.per_block <= limit and swap <= model.max_blocks_to_swap else None

    def make(checkpointing: bool, batch: int, swap: int, fp8: bool) -> Choice:
        peak = margin(checkpointing) * model.peak(
            checkpointing=checkpointing, batch=batch, swap=swap, shape=shape, fp8=fp8, processes=processes
        )
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
            limit=_limit(checkpointing, split),
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
) -> float:
    """The model's peak for settings as they stand (to warn when a spec's own settings will not fit),
    less compile's measured saving where the spec compiles without checkpointing (shown, never used
    to decide what fits)."""
    model: Model = table().model
    peak = model.peak(
        checkpointing=checkpointing, batch=batch, swap=swap, shape=shape, fp8=fp8, processes=processes
    )
    return peak - (model.compile_saving if compile and not checkpointing else 0.0)
