"""Which GPU this machine has, for `gpu: auto`: nvidia-smi's name and memory, else the musubi-tuner
Python's torch in a child process (fplora itself never imports torch), matched to a preset's GPU."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from fplora.presets.table import Gpu, table
from fplora.process import capture

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


def detect(python: str | None = None) -> Detected | None:
    """This machine's GPU (the smallest, when several), via nvidia-smi, else the musubi-tuner
    Python's torch in a child process; None without either."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        code, output = capture(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"], timeout=20
        )
        if code == 0 and (found := _parse(output, "nvidia-smi")):
            return found
    if python is not None:
        code, output = capture([python, "-c", _TORCH_PROBE], timeout=120)
        if code == 0 and (found := _parse(output.strip().splitlines()[-1] if output.strip() else "", python)):
            return Detected(found.name, found.memory_mib, 1, f"torch in {python}")
    return None


def match(detected: Detected) -> Gpu:
    """The preset for a detected GPU: a listed one by name and memory (within 3 %), else an unlisted
    GPU that the memory model serves with its own memory."""
    for gpu in table().gpus.values():
        named = any(part.lower() in detected.name.lower() for part in gpu.names)
        if named and abs(detected.memory_mib - gpu.memory_mib) <= 0.03 * gpu.memory_mib:
            return gpu
    return Gpu(AUTO, detected.name, detected.memory_mib, (), False)
