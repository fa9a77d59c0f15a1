"""Where a benchmark's figures were measured, recorded beside them in benchmarks/results/: the date,
the machine and the versions (the rehearsal benchmarks: rehearse_speed.py, rehearse_matrix.py,
rehearse_matrix_data.py) through `measured_on`, the GPU drivers (preset_speed.py, export_check.py)
through `gpu_versions`."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import state


def _cpu() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    found = (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    return next(found, platform.processor())


def measured_on(python: str, gpu: Any = None) -> dict[str, Any]:
    """`date`, `machine` (cpu, cores, gpu) and `versions` (fplora, the pinned musubi-tuner, torch and
    accelerate as the musubi-tuner Python `python` has them, this Python). fplora must be importable
    here: the caller runs from the checkout, or puts its src/ on sys.path first."""
    from fplora import __version__
    from fplora.musubi import schema

    probe = "import torch, accelerate; print(torch.__version__, accelerate.__version__)"
    versions = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, check=False
    ).stdout.split()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "gpu": gpu},
        "versions": {
            "fplora": __version__,
            "musubi_tuner": schema.pinned_commit(),
            "torch": versions[0] if versions else None,
            "accelerate": versions[1] if len(versions) > 1 else None,
            "python": platform.python_version(),
        },
    }


def gpu_versions() -> dict[str, str]:
    """torch, accelerate, transformers, bitsandbytes and triton in the Python that trains, the
    musubi-tuner commit fplora pins, and fplora's own commit; kept in the root for later commands."""
    kept = state.CFG.root / "versions.json"
    if kept.is_file():
        return dict(json.loads(kept.read_text()))
    names = ["torch", "accelerate", "transformers", "bitsandbytes", "triton"]
    probe = (
        "import importlib.metadata as m, json\n"
        "def v(n):\n    try:\n        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n        return None\n"
        f"print(json.dumps({{n: v(n) for n in {names!r}}}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    found = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else {}
    versions = {k: v for k, v in found.items() if v}
    versions["musubi-tuner"] = "30c658c4"
    commit = state.REPO / "COMMIT"
    if commit.is_file():
        versions["fplora"] = commit.read_text().strip()[:12]
    kept.write_text(json.dumps(versions))
    return versions


def card() -> str:
    """nvidia-smi's line for the first GPU (name, memory, driver), as the driver recorded it."""
    return (state.SUMMARY.get("gpu_names") or ["no GPU (local fake)"])[0]
