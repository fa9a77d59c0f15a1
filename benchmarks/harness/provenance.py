"""Where a benchmark's figures were measured, recorded beside them in benchmarks/results/: the date,
the machine and the versions (the rehearsal benchmarks: rehearse_speed.py, rehearse_matrix.py,
rehearse_matrix_data.py)."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


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
