"""Whether this machine, not the spec, stopped a stage: an attention kernel or package this
musubi-tuner Python lacks, or (without CUDA) a code path that only runs on CUDA.

Without CUDA (a laptop) such a stage is not rehearsed, and says that the GPU box's rehearsal checks
it. With CUDA this is the machine that trains: a kernel or package missing here stops the real run
the same way, so the stage fails, naming the spec line that needs it and the fix."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fplora.jobs.rehearse.blame import option_key
from fplora.jobs.rehearse.stages import Stage, flag_options
from fplora.problems import Problem, display_path
from fplora.spec.models import Spec
from fplora.spec.source import KeyPath, dotted

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


def stage_kernels(stage: Stage) -> list[str]:
    """The attention kernel packages a stage's options select."""
    found = [module for option, module in ATTENTION_KERNELS.items() if stage.options.get(option) is True]
    mode = GENERATE_KERNELS.get(str(stage.options.get("attn_mode")))
    return found + ([mode] if mode else [])


def asks_compile(stage: Stage) -> bool:
    """Whether a stage asks for torch.compile: musubi-tuner's `compile`, or accelerate's dynamo."""
    launch = flag_options(stage.argv[: stage.argv.index("-m", 3)] if "-m" in stage.argv[3:] else [])
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
_CUDA_ONLY = re.compile(r"supports? CUDA only|only supports? CUDA|CUDA is required|requires? (?:a )?CUDA\b")
"""musubi-tuner's own refusal of a device that is not CUDA, in the error that stopped the stage (not in
its log, where a package's import-time warning may say as much on every CPU): `LoRAStreamOffloader
currently supports CUDA only`, the H2D-only block swap of `block_swap_h2d_only`."""

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


def machine_reason(python: str, outcome: Outcome, watch: _Watch) -> str | None:
    """Why this machine, not the spec, stopped a failed stage: an attention kernel that is not
    installed, (without CUDA) a code path that only runs on CUDA, or a package the code imports (an
    optimizer's, a logger's) that this Python lacks. None when it was the spec. A package the error
    names comes first: a kernel the options select is stood in for without CUDA, and need not be
    what stopped the stage."""
    kernels = [m for m in stage_kernels(outcome.stage) if m in watch.missing_kernels]
    if kernels and not _missing_package(outcome.error or ""):
        return f"the attention kernel {kernels[0]} is not installed in this musubi-tuner Python"
    text = f"{outcome.error or ''} {' '.join(outcome.log[-40:])}"
    if not watch.cuda and (found := _NO_CUDA.search(text) or _CUDA_ONLY.search(outcome.error or "")):
        return f"its code path needs CUDA, which this machine lacks ({found.group(0)})"
    if not watch.cuda and _DTYPE_MIX.search(outcome.error or ""):
        for needs_cuda, why in _CUDA_AUTOCAST:
            if needs_cuda(outcome.stage.options):
                return why
    if package := _missing_package(outcome.error or ""):
        return (
            f"the package {package} is not installed in this musubi-tuner Python ({display_path(python)});"
            " the GPU box's rehearsal checks it there, and fails if it is missing there too"
        )
    return None


PACKAGE_VALUES = {"bitsandbytes": "8bit"}
"""Packages an option's value needs without naming them: bitsandbytes for the 8-bit optimizers
(`AdamW8bit`, `Lion8bit`, ...)."""


def _needing_option(stage: Stage, package: str) -> str | None:
    """The option (by dest) of a stage that makes its code import `package`: the attention option
    that selects the kernel, else the option whose value names the package (an optimizer
    `prodigyopt.Prodigy`, a logger `wandb`, a network module `lycoris.kohya`)."""
    for option, module in ATTENTION_KERNELS.items():
        if module == package and stage.options.get(option) is True:
            return option
    if GENERATE_KERNELS.get(str(stage.options.get("attn_mode"))) == package:
        return "attn_mode"
    hint = PACKAGE_VALUES.get(package, package).lower()
    for dest, value in stage.options.items():
        if isinstance(value, str) and hint in value.lower() and "/" not in value:
            return dest
    return None


def _spec_value(spec: Spec, key: KeyPath) -> object:
    value: object = spec
    for part in key:
        value = value.get(part) if isinstance(value, dict) else getattr(value, str(part), None)
    return value


def missing_on_training_box(spec: Spec, python: str, outcome: Outcome, watch: _Watch) -> str | None:
    """On a machine with CUDA (the one that trains), the one line that fails a stage stopped by a
    missing kernel or package: the spec line whose setting needs it, what is missing and the fix
    (install it, or choose another setting). None when no package is to blame."""
    kernels = [m for m in stage_kernels(outcome.stage) if m in watch.missing_kernels]
    package = _missing_package(outcome.error or "") or (kernels[0] if kernels else None)
    if package is None:
        return None
    lacks = (
        f"which this musubi-tuner Python ({display_path(python)}) lacks: the real run would stop the same way"
    )
    dest = _needing_option(outcome.stage, package)
    key = option_key(spec, outcome.stage.section, dest) if dest is not None else None
    if dest is None or key is None:
        return f"the package {package} is needed here, {lacks} — install {package} there"
    value = _spec_value(spec, key)
    shown = value if isinstance(value, str) else outcome.stage.options.get(dest)
    if package in kernels:
        fix = f"install {package} there, or choose {dotted(key)}: sdpa"
    else:
        fix = f"install {package} there, or change {dotted(key)}"
    problem: Problem = spec.problem(key, f"{shown} needs the package {package}, {lacks}", fix)
    return str(problem)
