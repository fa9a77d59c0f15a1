"""Finding the Python that has musubi-tuner, without importing it into fplora's process.

musubi-tuner is not on PyPI, so it is never a dependency of fplora: it lives in the same
environment (installed beside fplora) or in another one named by the spec or the environment.
"""

from __future__ import annotations

import os
import shutil
import sys

from fplora.musubi import schema
from fplora.musubi.names import ATTENTION_MODULES
from fplora.problems import Problem, UserError, display_path
from fplora.process import capture
from fplora.spec.models import Spec

PYTHON_ENV = "FPLORA_MUSUBI_PYTHON"

_PROBE = (
    "import importlib.util as u, sys\n"
    "missing = [m for m in sys.argv[1:] if u.find_spec(m) is None]\n"
    "print(' '.join(missing))\n"
    "sys.exit(3 if missing else 0)\n"
)


def needed_modules(spec: Spec) -> list[str]:
    """What the run will import: musubi-tuner and accelerate, and what the spec's choices add
    (musubi-tuner imports these only after loading the models, minutes into a run)."""
    modules = ["musubi_tuner", "accelerate"]
    if spec.train.logging.log_with in ("wandb", "all"):
        modules.append("wandb")
    if spec.train.logging.log_with in ("tensorboard", "all"):
        modules.append("tensorboard")
    if "8bit" in spec.train.optimizer.type.lower():
        modules.append("bitsandbytes")
    for attention in (spec.train.attention, spec.infer.attention):
        kernel = ATTENTION_MODULES.get(attention)
        if kernel and kernel not in modules:
            modules.append(kernel)
    return modules


def python_for(spec: Spec | None) -> str:
    """The environment variable wins (one GPU box, many specs), then the spec, then this Python.
    Without a spec (`fplora doctor` outside a project) only the variable counts."""
    chosen = os.environ.get(PYTHON_ENV) or (spec.musubi.python if spec is not None else None)
    if not chosen:
        return sys.executable
    return shutil.which(chosen) or chosen


def install_hint() -> str:
    commit = schema.pinned_commit()
    return (
        "install it beside fplora as the README's 'Install on the GPU box' says: uv pip install"
        f' "musubi-tuner[cu128] @ git+https://github.com/kohya-ss/musubi-tuner@{commit}";'
        f" or point {PYTHON_ENV} (or musubi.python in the spec) at a Python that has it"
    )


def ensure_musubi(python: str, modules: list[str] | None = None) -> None:
    """Fail with install instructions unless `python` can import every module the run needs."""
    modules = modules or ["musubi_tuner", "accelerate"]
    code, output = capture([python, "-c", _PROBE, *modules])
    if code == 0:
        return
    if code == 3:
        missing = output.strip().splitlines()[-1].split() if output.strip() else modules[:1]
        message = f"{python} cannot import {', '.join(missing)}"
    else:
        message = f"cannot run {python}: {output.strip().splitlines()[-1] if output.strip() else code}"
    raise UserError(Problem("musubi-tuner", None, "", message, install_hint()))


def visible_gpus() -> int | None:
    """GPUs this machine offers to one process group (CUDA_VISIBLE_DEVICES, else nvidia-smi), or None
    when that cannot be told (no NVIDIA tools): then accelerate is left to find out."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    code, output = capture([smi, "-L"], timeout=20)
    if code != 0:
        return None
    return sum(1 for line in output.splitlines() if line.startswith("GPU "))


def gpu_problem(spec: Spec) -> Problem | None:
    """More training processes on this machine than GPUs: accelerate would fail after minutes."""
    per_machine = spec.launch.num_processes // spec.launch.num_machines
    gpus = visible_gpus()
    if gpus is None or per_machine <= gpus:
        return None
    return Problem(
        display_path(spec.path),
        None,
        "launch.num_processes",
        f"{per_machine} processes on this machine, but it has {gpus} GPU(s)",
        f"set launch.num_processes to {gpus * spec.launch.num_machines} or fewer",
    )
