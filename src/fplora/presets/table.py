"""The measurements behind the GPU presets, and the memory model fitted to them, as data.

`measurements.json` holds every training run fplora's presets are allowed to rely on: the H200 table
of issue 12 and the H100 figures of docs/gpu-e2e.md, out-of-memory cells included. For GPUs nobody
measured (48 GB and 24 GB cards) a preset is derived from the linear memory model below and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Gpu:
    key: str
    label: str
    memory_mib: int
    names: tuple[str, ...]  # substrings of the name nvidia-smi reports
    measured: bool


@dataclass(frozen=True)
class Row:
    """One measured training configuration at the reference shape."""

    gpu: str
    source: str
    batch: int
    blocks_to_swap: int
    gradient_checkpointing: bool
    s_per_step: float | None
    peak_mib: int | None  # None: out of memory
    fp8: bool = False
    processes: int = 1
    compile: bool = False  # train.compile (musubi-tuner's --compile)
    # other musubi-tuner options the run used (TF32, checkpointing's CPU offload, ...): reported in
    # docs/presets.md, never chosen, since a preset does not set them
    options: tuple[str, ...] = ()
    # a later source that measured the same settings side by side with the others: that row is used,
    # this one is kept for the record (issue 12's 17.1 s/step for the memo's settings was not reproduced)
    superseded: str | None = None
    first_step_extra_s: float = 0.0  # step 1 beyond a later step (compiling, H200: 61.6 - 16.1 s, ~45)
    note: str = ""
    # the shape, where it is not the reference's (the GPU matrix's one- and three-control cells)
    width: int | None = None
    height: int | None = None
    controls: int | None = None
    split_attn: bool = True  # the presets' rows all ran with it; batch 1 runs without it too
    # why this row's s/step is not used for estimates or ranking (its peak still is)
    time_unreliable: str | None = None
    # reported by an issue, not reproduced by a run whose results are in this repo: shown, never
    # chosen (issue 12's 17.1 s/step for the memo's settings was 22.4 when run again side by side)
    unreproduced: bool = False

    @property
    def samples_per_s(self) -> float | None:
        return self.batch / self.s_per_step if self.s_per_step else None

    @property
    def usable_s_per_step(self) -> float | None:
        """The s/step estimates may rely on: None for a time that is not trusted."""
        return None if self.time_unreliable or self.unreproduced else self.s_per_step

    @property
    def covered_by_model(self) -> bool:
        """Whether the memory model covers this row: compile and other options change the peak."""
        return not self.compile and not self.options

    def shape(self, reference: tuple[int, int, int]) -> float:
        """Per-sample memory and compute against the reference shape (see choose.shape_factor)."""
        ref_w, ref_h, ref_c = reference
        width, height = self.width or ref_w, self.height or ref_h
        controls = ref_c if self.controls is None else self.controls
        return (width * height) / (ref_w * ref_h) * (1 + controls) / (1 + ref_c)


@dataclass(frozen=True)
class Limit:
    """Settings where the memory model was checked against a run and missed by more than 2 %:
    `error` is (measured − modelled) / modelled (negative: the model over-predicts, which is safe)."""

    gradient_checkpointing: bool | None
    split_attn: bool | None
    error: float
    why: str

    def matches(self, checkpointing: bool, split_attn: bool) -> bool:
        return (self.gradient_checkpointing is None or self.gradient_checkpointing == checkpointing) and (
            self.split_attn is None or self.split_attn == split_attn
        )


@dataclass(frozen=True)
class Model:
    """Peak MiB = fixed + per_sample × batch × shape − per_block × blocks_to_swap (+ ddp, − fp8)."""

    fixed: dict[bool, float]  # by gradient checkpointing
    per_sample: dict[bool, float]
    per_block: float
    ddp: float
    fp8: float
    max_blocks_to_swap: int
    measured_swap_up_to: int
    headroom: float
    limits: tuple[Limit, ...] = ()
    # what torch.compile saved without checkpointing at batch 1 (H200: 85,757 -> 74,397 MiB); shown
    # in estimates, never used to decide what fits a card
    compile_saving: float = 0.0

    def limit(self, checkpointing: bool, split_attn: bool) -> Limit | None:
        """Where these settings lie past what the model was checked to within 2 %, and by how much."""
        return next((lim for lim in self.limits if lim.matches(checkpointing, split_attn)), None)

    def peak(
        self, *, checkpointing: bool, batch: int, swap: int, shape: float, fp8: bool, processes: int
    ) -> float:
        """Predicted peak GPU memory of one process, MiB."""
        peak = self.fixed[checkpointing] + self.per_sample[checkpointing] * batch * shape
        peak -= self.per_block * swap
        if processes > 1:
            peak += self.ddp
        if fp8:
            peak -= self.fp8
        return peak


@dataclass(frozen=True)
class Table:
    gpus: dict[str, Gpu]
    rows: tuple[Row, ...]
    model: Model
    sources: dict[str, dict[str, str]]
    reference: tuple[int, int, int]  # width, height, control images


@cache
def table() -> Table:
    """measurements.json, parsed once."""
    raw: dict[str, Any] = json.loads(
        resources.files(__package__).joinpath("measurements.json").read_text(encoding="utf-8")
    )
    gpus = {
        key: Gpu(key, g["label"], int(g["memory_mib"]), tuple(g["names"]), bool(g["measured"]))
        for key, g in raw["gpus"].items()
    }
    rows = tuple(
        Row(
            gpu=r["gpu"],
            source=r["source"],
            batch=int(r["batch"]),
            blocks_to_swap=int(r["blocks_to_swap"]),
            gradient_checkpointing=bool(r["gradient_checkpointing"]),
            s_per_step=r["s_per_step"],
            peak_mib=r["peak_mib"],
            fp8=bool(r.get("fp8", False)),
            processes=int(r.get("processes", 1)),
            compile=bool(r.get("compile", False)),
            options=tuple(r.get("options", ())),
            superseded=r.get("superseded"),
            first_step_extra_s=float(r.get("first_step_extra_s", 0.0)),
            note=r.get("note", ""),
            width=r.get("width"),
            height=r.get("height"),
            controls=r.get("controls"),
            split_attn=bool(r.get("split_attn", True)),
            time_unreliable=r.get("time_unreliable"),
            unreproduced=bool(r.get("unreproduced", False)),
        )
        for r in raw["rows"]
    )
    m = raw["model"]
    model = Model(
        fixed={True: m["checkpointing"]["fixed"], False: m["no_checkpointing"]["fixed"]},
        per_sample={True: m["checkpointing"]["per_sample"], False: m["no_checkpointing"]["per_sample"]},
        per_block=m["per_block"],
        ddp=m["ddp"],
        fp8=m["fp8"],
        max_blocks_to_swap=int(m["max_blocks_to_swap"]),
        measured_swap_up_to=int(m["measured_swap_up_to"]),
        headroom=float(m["headroom"]),
        compile_saving=float(m.get("compile_saving", 0.0)),
        limits=tuple(
            Limit(lim.get("gradient_checkpointing"), lim.get("split_attn"), float(lim["error"]), lim["why"])
            for lim in m.get("limits", ())
        ),
    )
    ref = raw["reference"]
    return Table(gpus, rows, model, raw["sources"], (ref["width"], ref["height"], ref["control_images"]))
