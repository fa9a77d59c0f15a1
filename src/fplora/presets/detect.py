"""Which GPU this machine has, for `gpu: auto`: nvidia-smi's name and memory, else the musubi-tuner
Python's torch in a child process (fplora itself never imports torch), matched to a preset's GPU.

Asking torch costs seconds (importing it), which every command of a `gpu: auto` spec would pay on a
machine without nvidia-smi: a repeated rehearsal of an unchanged spec would take 2-4 s instead of
well under one. So torch's answer is remembered in the project's `.fplora/`, keyed by what can
change it: the Python (its path, and the modification times of it and of its site-packages, which
an install of another torch touches), CUDA_VISIBLE_DEVICES and the machine's boot (a card added or
a driver installed takes a reboot). The answer is also kept in the user's cache folder
(`state.user_cache`), as the key holds for the whole machine: a new project (each first rehearsal
of one, on a laptop without nvidia-smi) then asks torch only if no project on this machine did.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fplora.atomic import write_atomic
from fplora.presets.table import Gpu, table
from fplora.process import capture
from fplora.state import user_cache

AUTO = "auto"  # the spec's `gpu: auto`: detect, then match

_TORCH_PROBE = (
    "import torch\n"
    "if not torch.cuda.is_available(): raise SystemExit(3)\n"
    "p = torch.cuda.get_device_properties(0)\n"
    "print(f'{p.name}, {p.total_memory // 2**20}')\n"
)


@dataclass(frozen=True)
class Detected:
    name: str
    memory_mib: int
    count: int
    how: str  # "nvidia-smi" or "torch in <python>"


def _parse(output: str, how: str) -> Detected | None:
    gpus: list[tuple[str, int]] = []
    for line in output.strip().splitlines():
        name, _, memory = line.rpartition(",")
        if name.strip() and memory.strip().isdigit():
            gpus.append((name.strip(), int(memory.strip())))
    if not gpus:
        return None
    smallest = min(gpus, key=lambda g: g[1])  # the smallest card bounds a data-parallel run
    return Detected(smallest[0], smallest[1], len(gpus), how)


def detect(python: str | None = None, remember: Path | None = None) -> Detected | None:
    """This machine's GPU (the smallest, when several), via nvidia-smi, else the musubi-tuner
    Python's torch in a child process; None without either. With `remember` (a project's
    `.fplora/`), torch's answer is kept there and in the user's cache, and reused from either while
    its key holds."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        code, output = capture(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"], timeout=20
        )
        if code == 0 and (found := _parse(output, "nvidia-smi")):
            return found
    if python is None:
        return None
    stores = [remember / PROBE_FILE, user_cache() / PROBE_FILE] if remember is not None else []
    key = _probe_key(python)
    known = [_recalled(store) for store in stores]
    kept = [answers for answers in known if key in answers]
    if kept:
        answer = kept[0][key]
        if key not in known[0]:  # asked in another project on this machine: this one keeps it too
            _keep(stores[0], {**known[0], key: answer})
    else:
        code, output = capture([python, "-c", _TORCH_PROBE], timeout=120)
        last = output.strip().splitlines()[-1] if output.strip() else ""
        found = _parse(last, python) if code == 0 else None
        answer = (found.name, found.memory_mib) if found else None
        if found is not None or code == 3:  # an answer, not a broken Python
            for store, answers in zip(stores, known, strict=True):
                _keep(store, {**answers, key: answer})
    return Detected(answer[0], answer[1], 1, f"torch in {python}") if answer else None


PROBE_FILE = "gpu-probe.json"
_KEPT = 8  # keys remembered: a few Pythons or CUDA_VISIBLE_DEVICES values in turn, not every boot's


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _probe_key(python: str) -> str:
    """What torch's answer depends on, as a digest (see the module's docstring)."""
    where = Path(shutil.which(python) or python).absolute()
    venv = where.parent.parent  # a venv's bin/python links to the base Python: its lib is its own
    base = where.resolve().parent.parent
    site = sorted({*venv.glob("lib/python*/site-packages"), *base.glob("lib/python*/site-packages")})
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip()
    except OSError:
        boot = None
    parts = {
        "python": str(where),
        "mtime": _mtime(where),
        "site": {str(p): _mtime(p) for p in site},
        "pythonpath": os.environ.get("PYTHONPATH"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "boot": boot,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _recalled(store: Path) -> dict[str, tuple[str, int] | None]:
    """The answers remembered in `store` by key (None: torch saw no GPU); what does not read as
    one is left out, and asked again."""
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    answers: dict[str, tuple[str, int] | None] = {}
    for key, gpu in known.items() if isinstance(known, dict) else ():
        if gpu is None:
            answers[key] = None
        elif isinstance(gpu, list) and len(gpu) == 2 and isinstance(gpu[0], str) and isinstance(gpu[1], int):
            answers[key] = (gpu[0], gpu[1])
    return answers


def _keep(store: Path, answers: dict[str, tuple[str, int] | None]) -> None:
    """Write the latest `_KEPT` answers (written whole, then renamed: a reader never sees half)."""
    latest = dict(list(answers.items())[-_KEPT:])
    text = json.dumps({k: list(v) if v else None for k, v in latest.items()}, indent=1) + "\n"
    with contextlib.suppress(OSError):  # a read-only project asks torch every time
        write_atomic(store, text)


def match(detected: Detected) -> Gpu:
    """The preset for a detected GPU: a listed one by name and memory (within 3 %), else an unlisted
    GPU that the memory model serves with its own memory."""
    for gpu in table().gpus.values():
        named = any(part.lower() in detected.name.lower() for part in gpu.names)
        if named and abs(detected.memory_mib - gpu.memory_mib) <= 0.03 * gpu.memory_mib:
            return gpu
    return Gpu(AUTO, detected.name, detected.memory_mib, (), False)
