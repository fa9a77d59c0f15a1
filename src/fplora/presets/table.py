"""The measurements behind the GPU presets, and the memory model fitted to them, as data.

`measurements.json` holds every training run fplora's presets are allowed to rely on: the H200 table
of issue 12 and the H100 figures of docs/gpu-e2e.md, out-of-memory cells included. For GPUs nobody
measured (48 GB and 24 GB cards) a preset is derived from the linear memory model below and says so.

Shapes are counted in the DiT's tokens per sample (`tokens`), not in pixels: the context (729
SigLIP tokens and the caption, padded to 512 LLaMA tokens) does not grow with the image, and a
control image adds a target frame's tokens but not the history's. Counted in pixels x (1 + controls),
the rows without split_attn came out 5 % under the model (a limit it carried) and the GPU matrix's
three-control cell 1.7 % under; in tokens every row fits within 2 % (docs/presets.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

from fplora.presets import flops

# musubi-tuner pads (or crops) the LLaMA caption to 512 tokens for FramePack (crop_or_pad_yield_mask);
# batch 1 without split_attn crops that padding back to the caption's own tokens
CAPTION_PADDED = 512
CAPTION = 20  # the GPU harness's captions, which every row measured without split_attn used


def tokens(
    width: int,
    height: int,
    controls: int,
    *,
    no_post: bool = True,
    no_2x: bool = False,
    no_4x: bool = False,
    caption: int = CAPTION_PADDED,
) -> int:
    """Tokens one training sample puts through the DiT (presets/flops.py counts them)."""
    found = flops.tokens(
        width, height, controls, no_post=no_post, no_2x=no_2x, no_4x=no_4x, text_tokens=caption
    )
    return found.total


@dataclass(frozen=True)
class Gpu:
    key: str
    label: str
    memory_mib: int
    names: tuple[str, ...]  # substrings of the name nvidia-smi reports
    measured: bool


@dataclass(frozen=True)
class Row:
    """One measured training configuration (at the reference shape unless width, height or controls say
    otherwise)."""

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
        """Whether the memory model covers this row: options it does not know change the peak, and
        compile was measured without checkpointing only."""
        return not self.options and not (self.compile and self.gradient_checkpointing)

    def shape(self, reference: tuple[int, int, int]) -> float:
        """Tokens per sample against the reference shape's, the caption padded (choose.shape_factor;
        what batch 1 without split_attn crops of it, Model.tokens takes off)."""
        ref_w, ref_h, ref_c = reference
        width, height = self.width or ref_w, self.height or ref_h
        controls = ref_c if self.controls is None else self.controls
        return tokens(width, height, controls) / tokens(ref_w, ref_h, ref_c)


@dataclass(frozen=True)
class Limit:
    """Settings where the memory model was checked against a run and missed by more than 2 %:
    `error` is (measured − modelled) / modelled (negative: the model over-predicts, which is safe).
    `compile` and `above_tokens` (tokens per micro-batch the DiT sees, exclusive) narrow it to where
    the miss was measured: None matches any."""

    gradient_checkpointing: bool | None
    split_attn: bool | None
    error: float
    why: str
    compile: bool | None = None
    above_tokens: float | None = None

    def matches(self, checkpointing: bool, split_attn: bool, compile: bool, tokens: float) -> bool:
        return (
            (self.gradient_checkpointing is None or self.gradient_checkpointing == checkpointing)
            and (self.split_attn is None or self.split_attn == split_attn)
            and (self.compile is None or self.compile == compile)
            and (self.above_tokens is None or tokens > self.above_tokens)
        )


@dataclass(frozen=True)
class Model:
    """Peak MiB = fixed + per_sample × batch × shape − per_block × blocks_to_swap (+ ddp, − fp8), with
    `shape` in tokens per sample against the reference's (less the caption's padding, where batch 1
    runs without split_attn), and a smaller per_sample under torch.compile without checkpointing."""

    fixed: dict[bool, float]  # by gradient checkpointing
    per_sample: dict[bool, float]
    per_block: float
    ddp: float
    fp8: float
    max_blocks_to_swap: int
    measured_swap_up_to: int
    headroom: float
    limits: tuple[Limit, ...] = ()
    # per sample under torch.compile without checkpointing (its fused kernels keep fewer activations:
    # 74,377 against 85,757 MiB at batch 1); fitted at the house shape, checked at two more on an H100
    compiled_per_sample: float = 0.0
    # the caption's padding that batch 1 without split_attn crops, in shape units (set by table())
    cropped: float = 0.0
    # tokens per sample at the reference shape, the caption padded (set by table()): shape units to tokens
    reference_tokens: float = 1.0

    def limit(self, checkpointing: bool, split_attn: bool, compile: bool, tokens: float) -> Limit | None:
        """Where these settings lie past what the model was checked to within 2 %, and by how much
        (`tokens`: per micro-batch, in shape units, as `tokens()` gives them)."""
        count = tokens * self.reference_tokens
        return next(
            (lim for lim in self.limits if lim.matches(checkpointing, split_attn, compile, count)), None
        )

    def tokens(self, shape: float, batch: int, split_attn: bool) -> float:
        """`shape` as the DiT sees it: without split_attn, batch 1 crops the caption's padding."""
        return shape - self.cropped if not split_attn and batch == 1 else shape

    def sample(self, checkpointing: bool, compile: bool) -> float:
        """MiB per sample at the reference shape."""
        return self.compiled_per_sample if compile and not checkpointing else self.per_sample[checkpointing]

    def peak(
        self,
        *,
        checkpointing: bool,
        batch: int,
        swap: int,
        shape: float,
        fp8: bool,
        processes: int,
        split_attn: bool = True,
        compile: bool = False,
    ) -> float:
        """Predicted peak GPU memory of one process, MiB."""
        per_sample = self.sample(checkpointing, compile)
        peak = self.fixed[checkpointing] + per_sample * batch * self.tokens(shape, batch, split_attn)
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
        compiled_per_sample=float(m["no_checkpointing"]["compiled_per_sample"]),
        limits=tuple(
            Limit(
                lim.get("gradient_checkpointing"),
                lim.get("split_attn"),
                float(lim["error"]),
                lim["why"],
                lim.get("compile"),
                lim.get("above_tokens"),
            )
            for lim in m.get("limits", ())
        ),
    )
    ref = raw["reference"]
    reference = (ref["width"], ref["height"], ref["control_images"])
    padded = tokens(*reference)
    cropped = (padded - tokens(*reference, caption=CAPTION)) / padded
    model = replace(model, cropped=cropped, reference_tokens=float(padded))
    return Table(gpus, rows, model, raw["sources"], reference)
