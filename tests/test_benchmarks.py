"""The GPU drivers run every stage and assert against a fake musubi-tuner on the CPU.

Device time is scarce (minutes per session): a driver broken by a change to fplora (a new default, a
renamed output) must fail here, not ten minutes into a GPU call. Each driver's `--local-fake` mode
puts its own stand-in for the musubi-tuner Python behind FPLORA_MUSUBI_PYTHON and runs fplora's CLI
for real. The GPU option matrix (`gpu_matrix.py --local-fake`, ~40 s) is left to its own runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("driver", ["gpu_e2e", "sweep_speed", "eval_check", "preset_speed"])
def test_the_gpu_driver_passes_against_its_fake(driver: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / f"{driver}.py"),
            "--local-fake",
            "--root",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
