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


def _row_peak(row: Row, batch: int, shape: float, processes: int) -> float:
    """A measured row's peak, moved to another shape, micro-batch and process count by the model.

    A compiled row is credited no less than the model's uncompiled peak: compile's saving (11 GB at
    batch 1 on the H200) was measured at one shape and batch only."""
    model = table().model
    assert row.peak_mib is not None
    peak = row.peak_mib + model.per_sample[row.gradient_checkpointing] * (batch * shape - row.batch)
    if processes > 1 and row.processes == 1:
        peak += model.ddp
    if processes == 1 and row.processes > 1:
        peak -= model.ddp
    if row.compile:
        uncompiled = model.peak(
            checkpointing=row.gradient_checkpointing,
            batch=batch,
            swap=row.blocks_to_swap,
            shape=shape,
            fp8=row.fp8,
            processes=processes,
        )
        peak = max(peak, uncompiled)
    return peak


def _matches(row: Row, pinned: Pinned) -> bool:
    return (
        (pinned.blocks_to_swap is None or row.blocks_to_swap == pinned.blocks_to_swap)
        and (
            pinned.gradient_checkpointing is None
            or row.gradient_checkpointing == pinned.gradient_checkpointing
        )
        and (pinned.fp8 is None or row.fp8 == pinned.fp8)
        and (pinned.compile is None or row.compile == pinned.compile)
        and not row.options
        and row.superseded is None
    )


def _from_rows(
    gpu: str, label: str, memory: int, effective: int, shape: float, processes: int, pinned: Pinned
) -> Choice | None:
    """The fastest measured configuration that fits: rows are ranked by samples per second."""
    limit = memory * (1 - table().model.headroom)
    best: Choice | None = None
    for row in table().rows:
        if row.gpu != gpu or row.peak_mib is None or row.s_per_step is None or not _matches(row, pinned):
            continue
        if row.compile and processes != row.processes:
            continue  # torch.compile under DDP (or alone, from a DDP row) was never run
        fitting = [d for d in divisors(effective) if d <= row.batch]
        batch = pinned.batch if pinned.batch is not None else (fitting[0] if fitting else 1)
        peak = _row_peak(row, batch, shape, processes)
        if peak > limit:
            continue
        # compute grows with the tokens; far from the measured shape, fixed costs dominate: no time
        s_per_step = row.s_per_step / row.batch * batch * shape if 0.5 <= shape <= 2 else None
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
        )
        rate = (row.samples_per_s or 0.0) * (1 if batch == row.batch else 0.999)
        if best is None or best.row is None or rate > (best.row.samples_per_s or 0.0):
            best = choice
    return best


def _from_model(
    gpu: str, label: str, memory: int, effective: int, shape: float, processes: int, pinned: Pinned
) -> Choice | None:
    """The memory model's answer: no recomputation if it fits without swapping (the faster lever on
    the H200), else checkpointing at the largest micro-batch that needs no more block swap than was
    measured (20), else the least swap at batch 1, else fp8 base weights. Never torch.compile: it
    was measured on one GPU only, and its memory is not in the model."""
    model = table().model
    limit = memory * (1 - model.headroom)

    def swap_for(checkpointing: bool, batch: int, fp8: bool) -> int | None:
        peak = model.peak(
            checkpointing=checkpointing, batch=batch, swap=0, shape=shape, fp8=fp8, processes=processes
        )
        if pinned.blocks_to_swap is not None:
            swap = pinned.blocks_to_swap
        else:
            swap = max(0, -int(-(peak - limit) // model.per_block))
        return swap if peak - swap * model.per_block <= limit and swap <= model.max_blocks_to_swap else None

    def make(checkpointing: bool, batch: int, swap: int, fp8: bool) -> Choice:
        peak = model.peak(
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
    checkpointing: bool, batch: int, swap: int, fp8: bool, shape: float, processes: int
) -> float:
    """The model's peak for settings as they stand (to warn when a spec's own settings will not fit)."""
    model: Model = table().model
    return model.peak(
        checkpointing=checkpointing, batch=batch, swap=swap, shape=shape, fp8=fp8, processes=processes
    )
