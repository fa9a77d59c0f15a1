"""How long `fplora rehearse` takes on the repo's example project: a first rehearsal (median of 3,
each from a fresh copy of the project) and a repeated one of the unchanged spec (median of 3).

Goals (issue 20): the first ≤ 60 s on the 2-core CPU machine (≤ 20 s on a GPU machine), a repeat
< 1 s. Needs the CPU musubi-tuner Python (scripts/musubi-python.sh); prints the figures and writes
benchmarks/results/rehearse_speed-<date>.json.

    uv run python benchmarks/rehearse_speed.py [--python /tmp/fplora-musubi-venv/bin/python] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _project(root: Path) -> Path:
    (root / "configs").mkdir(parents=True)
    for name in ("base.yaml", "example.yaml"):
        shutil.copy(REPO / "configs" / name, root / "configs" / name)
    shutil.copytree(REPO / "datasets" / "example", root / "datasets" / "example")
    return root / "configs" / "example.yaml"


def _rehearse(spec: Path, env: dict[str, str], *extra: str) -> tuple[float, int, str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "fplora", "rehearse", str(spec), *extra],
        cwd=spec.parents[1],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return time.monotonic() - started, done.returncode, done.stdout + done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python", default=os.environ.get("FPLORA_MUSUBI_PYTHON", "/tmp/fplora-musubi-venv/bin/python")
    )
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    env = {**os.environ, "FPLORA_MUSUBI_PYTHON": options.python, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure as a user runs it: with bytecode caches
    firsts, repeats, unpreset = [], [], []
    with tempfile.TemporaryDirectory(prefix="fplora-rehearse-speed-") as tmp:
        for run in range(options.runs):
            spec = _project(Path(tmp) / f"p{run}")
            env["FPLORA_MODELS_DIR"] = str(Path(tmp) / "no-models")
            seconds, code, output = _rehearse(spec, env)
            if code != 0:
                print(output)
                print(f"run {run + 1}: the rehearsal failed (exit {code})")
                return 1
            firsts.append(seconds)
            print(f"first rehearsal, run {run + 1}: {seconds:.1f} s")
            again, code, output = _rehearse(spec, env)
            if code != 0 or "not run again" not in output:
                print(output)
                print("the repeat did not recognise the unchanged spec")
                return 1
            repeats.append(again)
            print(f"repeat of the unchanged spec, run {run + 1}: {again:.2f} s")
            # the example's base says `gpu: auto`: without nvidia-smi every fplora command asks the
            # musubi-tuner Python's torch for a GPU (seconds). The same spec with the preset off
            # shows what the rehearsal's own check costs
            plain = spec.with_name("no-preset.yaml")
            plain.write_text("extends: example.yaml\ngpu: null\n", encoding="utf-8")
            _rehearse(plain, env)
            seconds, code, output = _rehearse(plain, env)
            if code != 0 or "not run again" not in output:
                print(output)
                return 1
            unpreset.append(seconds)
            print(f"repeat with gpu: null (no GPU probe), run {run + 1}: {seconds:.2f} s")
    first, repeat = statistics.median(firsts), statistics.median(repeats)
    repeat_plain = statistics.median(unpreset)
    print(
        f"median of {options.runs}: first rehearsal {first:.1f} s (goal <= 60 s on a 2-core CPU),"
        f" repeat {repeat:.2f} s (goal < 1 s), repeat without the GPU preset's probe {repeat_plain:.2f} s"
    )
    versions = subprocess.run(
        [options.python, "-c", "import torch, accelerate; print(torch.__version__, accelerate.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    from fplora import __version__
    from fplora.musubi import schema

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "gpu": None},
        "versions": {
            "fplora": __version__,
            "musubi_tuner": schema.pinned_commit(),
            "torch": versions[0] if versions else None,
            "accelerate": versions[1] if len(versions) > 1 else None,
            "python": platform.python_version(),
        },
        "runs": options.runs,
        "first_seconds": [round(s, 2) for s in firsts],
        "repeat_seconds": [round(s, 3) for s in repeats],
        "first_median_seconds": round(first, 2),
        "repeat_median_seconds": round(repeat, 3),
        "repeat_without_gpu_probe_seconds": [round(s, 3) for s in unpreset],
        "repeat_without_gpu_probe_median_seconds": round(repeat_plain, 3),
        "note": "the example's base.yaml says gpu: auto; without nvidia-smi each fplora command probes"
        " torch in the musubi-tuner Python for a GPU (presets/detect.py), which the repeat pays",
        "goals": {"first_cpu_seconds": 60, "first_gpu_seconds": 20, "repeat_seconds": 1},
    }
    out = REPO / "benchmarks" / "results" / f"rehearse_speed-{datetime.now(UTC):%Y%m%d}.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"written {out.relative_to(REPO)}")
    return 0 if first <= 60 and repeat_plain < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
