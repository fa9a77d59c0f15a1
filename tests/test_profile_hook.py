"""benchmarks/profile_hook on musubi-tuner's real training loop (CPU, the rehearsal's stand-in DiT).

Why: the hook is meant for one short GPU call (benchmarks/preset_speed.py's `profile` stage); if it did
not reach the training process, wrapped the wrong step or cut its window wrongly, that call would come
back without a table. Here `fplora rehearse` runs musubi-tuner's own training (accelerate, adamw8bit)
with the hook first on PYTHONPATH, as the stage puts it, and the export it writes is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.musubi
def test_the_hook_profiles_step_2_of_a_real_rehearsal_with_the_optimizer_inside_its_window(
    tmp_path: Path, musubi_python
) -> None:
    (tmp_path / "configs").mkdir()
    for name in ("base.yaml", "example.yaml"):
        shutil.copy(REPO / "configs" / name, tmp_path / "configs" / name)
    shutil.copytree(REPO / "datasets" / "example", tmp_path / "datasets" / "example")
    out = tmp_path / "profile"
    paths = [str(REPO / "benchmarks" / "profile_hook"), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        **musubi_python.env,
        "FPLORA_MODELS_DIR": str(tmp_path / "no-models"),
        "PYTHONPATH": os.pathsep.join(filter(None, paths)),
        "FPLORA_PROFILE_OUT": str(out),
        "FPLORA_PROFILE_STEP": "2",  # the rehearsal trains 2 steps
    }
    done = subprocess.run(
        [sys.executable, "-m", "fplora", "rehearse", "configs/example.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    log = (tmp_path / "configs" / "example" / "rehearsal" / "rehearsal.log").read_text(errors="replace")
    assert "fplora-profile: profiling optimizer step 2 (CPU only)" in log
    raw = json.loads((out / "profile-raw.json").read_text())
    assert raw["step"] == 2 and raw["basis"] == "cpu" and raw["window_s"] > 0
    assert raw["trace"] == {"written": False, "why": "FPLORA_PROFILE_TRACE not set"}
    (step,) = [r for r in raw["rows"] if r["name"].startswith("Optimizer.step#")]
    under = sum(w["us"] for w in raw["work"] if w["scope"] == "optimizer")
    # the whole optimizer step is inside the window: its ops add up to its host time
    assert step["count"] == 1 and abs(under - step["cpu_total_us"]) / step["cpu_total_us"] < 0.05
    assert any(w["name"].startswith("bitsandbytes::") and w["scope"] == "optimizer" for w in raw["work"])
    assert any(w["scope"] == "backward" for w in raw["work"])
