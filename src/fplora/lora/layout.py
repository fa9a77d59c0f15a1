"""musubi-tuner's LoRA layout → the diffusers/PEFT layout, with alpha folded into the weights.

musubi-tuner applies a module's LoRA as `W + m · (alpha / rank) · up @ down`. A diffusers/PEFT
loader (FramePack-Studio's, neph1/FramePack's: `load_lora_adapter(..., network_alphas=None)`) has no
alpha and applies `W + m · B @ A`. So each module becomes `A = down` (unchanged) and
`B = (alpha / rank) · up`, named from the module's path (`musubi/framepack.py`), never guessed back
from the musubi-tuner name.

Precision: the product `(alpha / rank) · up` is taken in float64 from the stored values (exact), then
rounded once to the dtype written. When alpha / rank is a power of two (alpha 16 at rank 32, fplora's
default; alpha 1 at rank 16) the fold is exact in the file's own dtype, bit for bit, and a bf16 LoRA
stays bf16, which the pinned `fpack_generate_video` needs (it cannot merge a float32 LoRA into its
bf16 DiT). Otherwise (alpha 3 at rank 4: 0.75) bf16 would move each element of B by up to half a unit
in its last place, 2⁻⁸ relative, so by default the file is written in float32, where the fold is
exact for such scales and within 2⁻²⁴ relative for any; `--dtype bf16` keeps bf16 and says how far
it rounded (`Converted.largest_change`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from fplora.lora.tensors import FLOAT32, Tensor, store
from fplora.musubi.framepack import (
    ALPHA,
    DOWN,
    PEFT_A,
    PEFT_B,
    UP,
    diffusers_name,
    lora_modules,
    musubi_name,
)
from fplora.problems import Problem, UserError


@dataclass(frozen=True)
class Module:
    """One wrapped module of a musubi-tuner LoRA file."""

    path: str  # the DiT module path, `transformer_blocks.0.attn.to_q`
    down: Tensor
    up: Tensor
    alpha: float | None  # None when the file has no alpha (musubi-tuner then takes the rank)

    @property
    def rank(self) -> int:
        return int(self.down.array.shape[0])

    @property
    def scale(self) -> float:
        return (self.rank if self.alpha is None else self.alpha) / self.rank


def modules_of(tensors: dict[str, Tensor], where: str) -> list[Module]:
    """The file's modules by DiT path, in the DiT's order. A key that names no FramePack module or
    is not a plain LoRA's (LoHa, LoKr, a DoRA scale) is refused: exporting it would drop weights."""
    paths = {musubi_name(path): path for path in lora_modules()}
    parts: dict[str, dict[str, Tensor]] = defaultdict(dict)
    problems = []
    for key, tensor in tensors.items():
        name, _, suffix = key.partition(".")
        if name not in paths:
            problems.append(
                Problem(where, None, key, "names no FramePack DiT module", "export a FramePack LoRA")
            )
        elif suffix not in (DOWN, UP, ALPHA):
            problems.append(
                Problem(
                    where,
                    None,
                    key,
                    "is not a LoRA weight (lora_down, lora_up, alpha): LoHa, LoKr or DoRA",
                    "export a LoRA trained with network.module networks.lora_framepack",
                )
            )
        else:
            parts[name][suffix] = tensor
    found = []
    for name, path in paths.items():
        part = parts.get(name)
        if part is None:
            continue
        if DOWN not in part or UP not in part:
            missing = DOWN if DOWN not in part else UP
            problems.append(Problem(where, None, f"{name}.{missing}", "is missing", "export a complete LoRA"))
            continue
        alpha = part.get(ALPHA)
        value = float(alpha.to_float64().reshape(-1)[0]) if alpha is not None else None
        found.append(Module(path, part[DOWN], part[UP], value if value else None))
    if problems:
        raise UserError(problems)
    return found


@dataclass
class Converted:
    tensors: dict[str, Tensor]
    modules: int
    dtype: str  # the safetensors dtype written
    scales: list[float] = field(default_factory=list)  # the distinct alpha / rank, sorted
    largest_change: float = 0.0  # largest |rounded − exact| / |exact| over B's elements; 0: exact

    @property
    def exact(self) -> bool:
        return self.largest_change == 0.0


def _fold(modules: list[Module], dtype: str) -> Converted:
    import numpy as np

    tensors: dict[str, Tensor] = {}
    largest = 0.0
    for module in modules:
        exact = module.up.to_float64() * module.scale
        folded = Tensor(dtype, store(exact, dtype))
        nonzero = exact != 0
        if nonzero.any():  # checked even for a power of two: a subnormal result would round
            change = np.abs(folded.to_float64()[nonzero] - exact[nonzero]) / np.abs(exact[nonzero])
            largest = max(largest, float(change.max()))
        down = (
            module.down
            if module.down.dtype == dtype
            else Tensor(dtype, store(module.down.to_float64(), dtype))
        )
        name = diffusers_name(module.path)
        tensors[f"{name}.{PEFT_A}"] = down
        tensors[f"{name}.{PEFT_B}"] = folded
    scales = sorted({module.scale for module in modules})
    return Converted(tensors, len(modules), dtype, scales, largest)


def to_diffusers(modules: list[Module], dtype: str | None = None) -> Converted:
    """`transformer.<path>.lora_A.weight` / `.lora_B.weight` for every module, alpha folded into B,
    in `dtype` (a safetensors dtype). None: the file's own dtype when the fold is exact in it (alpha
    / rank a power of two), else float32, where a bf16 value times a short scale such as 0.75 is
    exact and any other scale rounds by at most 2⁻²⁴ relative."""
    source = modules[0].up.dtype if modules else FLOAT32
    converted = _fold(modules, dtype or source)
    if dtype is None and not converted.exact and source != FLOAT32:
        converted = _fold(modules, FLOAT32)
    return converted
