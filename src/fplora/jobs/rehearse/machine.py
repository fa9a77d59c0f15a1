"""Whether this machine, not the spec, stopped a stage: an attention kernel or package this
musubi-tuner Python lacks, or (without CUDA) a code path that only runs on CUDA."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fplora.jobs.rehearse.stages import Stage, _flag_options
from fplora.problems import display_path

if TYPE_CHECKING:
    from fplora.jobs.rehearse.watch import Outcome, _Watch


ATTENTION_KERNELS = {"flash_attn": "flash_attn", "xformers": "xformers"}
"""Training's attention options → the kernel package FramePack imports for each (flash3 has no FramePack
kernel at all, and training refuses sage_attn whatever is installed: both are the spec's failures)."""
GENERATE_KERNELS = {"flash": "flash_attn", "sageattn": "sageattention", "xformers": "xformers"}
"""generate's `--attn_mode` values → their kernel package."""
MISSING_MODULE = re.compile(r"\(the package (\w+) is not installed|ImportError: No (\w+) /")
"""A package the code imports that this Python lacks: the worker's note on a top-level module that
is not installed at all (a missing part of an installed package is the spec's mistake), or
musubi-tuner's own `ImportError: No wandb / ...`."""


def _stage_kernels(stage: Stage) -> list[str]:
    """The attention kernel packages a stage's options select."""
    found = [module for option, module in ATTENTION_KERNELS.items() if stage.options.get(option) is True]
    mode = GENERATE_KERNELS.get(str(stage.options.get("attn_mode")))
    return found + ([mode] if mode else [])


def _compiles(stage: Stage) -> bool:
    """Whether a stage asks for torch.compile: musubi-tuner's `compile`, or accelerate's dynamo."""
    launch = _flag_options(stage.argv[: stage.argv.index("-m", 3)] if "-m" in stage.argv[3:] else [])
    dynamo = str(launch.get("dynamo_backend", "no")).lower()
    return stage.options.get("compile") is True or dynamo not in ("no", "true")


def _missing_package(text: str) -> str | None:
    """The package a failed stage's code imported and this Python lacks, from the worker's note on a
    missing top-level module or musubi-tuner's own `ImportError: No <package> / ...`."""
    found = MISSING_MODULE.search(text)
    return (found.group(1) or found.group(2)) if found else None


_NO_CUDA = re.compile(
    r"Torch not compiled with CUDA|Found no NVIDIA driver|No CUDA GPUs are available|CUDA driver version is"
    r" insufficient|CUDA driver initialization failed|torch\.cuda\.is_available\(\) is False"
)
"""torch's errors when code asks for CUDA on a machine without it."""

_DTYPE_MIX = re.compile(r"mixed dtype|should be the same|expected scalar type|Float8|same dtype")
"""torch's errors for tensors of two dtypes meeting in one operation."""
_CUDA_AUTOCAST = (
    (
        lambda o: o.get("mixed_precision") == "fp16",
        "mixed_precision fp16 runs under autocast, which accelerate gives fp16 only on a GPU (on a CPU it"
        " runs without, and the bf16 DiT meets fp32 inputs)",
    ),
    (
        lambda o: bool(o.get("fp8_base")) and not o.get("fp8_scaled"),
        "fp8_base without fp8_scaled keeps fp8 weights that CUDA's autocast casts for each operation;"
        " a CPU's autocast does not",
    ),
)
"""Training options whose code path relies on CUDA's autocast: without CUDA, a dtype error there is
the machine's (the rehearsal on the GPU box runs it)."""


def _machine_reason(python: str, outcome: Outcome, watch: _Watch) -> str | None:
    """Why this machine, not the spec, stopped a failed stage: an attention kernel that is not
    installed, (without CUDA) a code path that only runs on CUDA, or a package the code imports (an
    optimizer's, a logger's) that this Python lacks. None when it was the spec."""
    kernels = [m for m in _stage_kernels(outcome.stage) if m in watch.missing_kernels]
    if kernels:
        return f"the attention kernel {kernels[0]} is not installed in this musubi-tuner Python"
    text = f"{outcome.error or ''} {' '.join(outcome.log[-40:])}"
    if not watch.cuda and (found := _NO_CUDA.search(text)):
        return f"its code path needs CUDA, which this machine lacks ({found.group(0)})"
    if not watch.cuda and _DTYPE_MIX.search(outcome.error or ""):
        for needs_cuda, why in _CUDA_AUTOCAST:
            if needs_cuda(outcome.stage.options):
                return why
    if package := _missing_package(outcome.error or ""):
        return (
            f"the package {package} is not installed in this musubi-tuner Python ({display_path(python)});"
            " not a mistake in the spec if the machine that trains has it"
        )
    return None
