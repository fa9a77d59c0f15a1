"""Finding the Python that has musubi-tuner, without importing it into fplora's process.

musubi-tuner is not on PyPI, so it is never a dependency of fplora: it lives in the same
environment (installed beside fplora) or in another one named by the spec or the environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from typing import Any

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
    if spec.train.logging.to_wandb:
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
        f" or point {PYTHON_ENV} (or musubi.python in the spec) at a Python that has it (a laptop's"
        " rehearsal: the CPU one that fplora's scripts/musubi-python.sh builds, as the README says)"
    )


def ensure_musubi(python: str, modules: list[str] | None = None) -> None:
    """Fail with install instructions unless `python` can import every module the run needs."""
    modules = modules or ["musubi_tuner", "accelerate"]
    if not os.path.exists(python):
        raise UserError(_no_such_python(python))
    code, output = capture([python, "-c", _PROBE, *modules])
    if code == 0:
        return
    if code == 3:
        missing = output.strip().splitlines()[-1].split() if output.strip() else modules[:1]
        message = f"{python} cannot import {', '.join(missing)}"
    else:
        message = f"cannot run {python}: {output.strip().splitlines()[-1] if output.strip() else code}"
    raise UserError(Problem("musubi-tuner", None, "", message, install_hint()))


def _no_such_python(python: str) -> Problem:
    """A musubi-tuner Python named by a path that is not there (a typo, a venv moved or not made on
    this machine): said as the setting that names it, since the install hint would send the user to
    install musubi-tuner into an environment they already have."""
    where = f"{PYTHON_ENV}={python}" if os.environ.get(PYTHON_ENV) else f"musubi.python {python}"
    return Problem(
        "musubi-tuner",
        None,
        "",
        f"{where}: no such file",
        "point it at the python of the environment musubi-tuner is installed in (e.g."
        " /opt/musubi/.venv/bin/python; the README's 'Install on the GPU box' makes one)",
    )


COMMIT_MARK = "FPLORA-MUSUBI-COMMIT "

# Where musubi-tuner is, its version and its commit, read without importing it: a git install's
# direct_url.json, else a COMMIT file beside its source (the GPU harness and the CPU musubi-tuner
# Python unpack the pinned tarball with one), else git. Run in the musubi-tuner Python: by
# `fplora doctor` as part of its probe, and alone before a worker is launched (`worker_commit`).
MUSUBI_INFO = """
def musubi_info():
    import importlib.metadata as metadata
    import importlib.util
    import json
    import subprocess
    from pathlib import Path

    spec = importlib.util.find_spec("musubi_tuner")
    if spec is None or not spec.submodule_search_locations:
        return None
    where = Path(list(spec.submodule_search_locations)[0])
    version = None
    for dist in ("musubi-tuner", "musubi_tuner"):
        try:
            version = version or metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    commit = None
    try:
        direct = metadata.distribution("musubi-tuner").read_text("direct_url.json")
        if direct:
            commit = json.loads(direct).get("vcs_info", {}).get("commit_id")
    except Exception:
        pass
    for folder in (where.parent, where.parent.parent):
        if commit is None and (folder / "COMMIT").is_file():
            commit = (folder / "COMMIT").read_text().strip()
        if commit is None and (folder / ".git").exists():
            try:
                done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                                      text=True, timeout=10)
                commit = done.stdout.strip() or None
            except Exception:
                pass
    return {"location": str(where), "version": version, "commit": commit}
"""
_COMMIT_PROBE = MUSUBI_INFO + f"import json\nprint({COMMIT_MARK!r} + json.dumps(musubi_info()))\n"


def commit_finding(info: dict[str, Any]) -> Problem:
    """musubi-tuner's commit against the one fplora's schema and workers were written for: ok, or a
    warning that says what may differ (`fplora doctor` lists it; a worker launch prints the warning)."""
    pinned, commit = schema.pinned_commit(), info.get("commit")
    detail = f"{info.get('version') or 'version unknown'} at {info.get('location')}"
    if commit == pinned:
        return Problem(
            "", None, "musubi-tuner", f"{detail}, commit {pinned[:8]} (the bundled schema's)", "", "ok"
        )
    if commit:
        return Problem(
            "",
            None,
            "musubi-tuner",
            f"{detail}, commit {commit[:8]}; fplora's schema is from {pinned[:8]}",
            "the option check below says whether that matters; the README's install pins the commit",
            "warning",
        )
    return Problem("", None, "musubi-tuner", f"{detail}, commit unknown (not a git install)", "", "warning")


def worker_commit(python: str, worker: str) -> list[Problem]:
    """Before a worker is launched: the doctor's commit check on `python`'s musubi-tuner. A worker calls
    musubi-tuner's internals as they are at the pinned commit (worker/musubi_calls.py), so another or
    an unknown commit gets a warning; the worker itself then checks every call's parameters before it
    loads a model, and stops with the calls that no longer fit."""
    _, output = capture([python, "-c", _COMMIT_PROBE], timeout=120)
    info = None
    for line in reversed(output.splitlines()):
        if line.startswith(COMMIT_MARK):
            with contextlib.suppress(json.JSONDecodeError):
                info = json.loads(line[len(COMMIT_MARK) :])
            break
    if info is None:
        return []  # not importable: ensure_musubi has said so already
    found = commit_finding(info)
    if found.severity == "ok":
        return []
    pinned = schema.pinned_commit()[:8]
    why = "another commit" if info.get("commit") else "an unknown commit"
    return [
        Problem(
            "",
            None,
            "musubi-tuner",
            f"{found.message}: the {worker} worker calls musubi-tuner's internals as they are at {pinned},"
            " and stops at once if one of them changed",
            f"install musubi-tuner at {pinned} (README) to run it as tested ({why} here)",
            "warning",
        )
    ]


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
    if gpus == 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hidden = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return Problem(
            display_path(spec.path),
            None,
            "launch.num_processes",
            f"{per_machine} process{'es' if per_machine != 1 else ''} on this machine, but no GPU is"
            f" visible{hidden}",
            "unset CUDA_VISIBLE_DEVICES (or name this machine's GPUs in it), on the GPU machine"
            if visible is not None
            else "run on the GPU machine",
        )
    return Problem(
        display_path(spec.path),
        None,
        "launch.num_processes",
        f"{per_machine} processes on this machine, but it has {gpus} GPU(s)",
        f"set launch.num_processes to {gpus * spec.launch.num_machines} or fewer",
    )
