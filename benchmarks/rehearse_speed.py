"""How long `fplora rehearse` takes on the repo's example project: a first rehearsal (median of 3,
each from a fresh copy of the project) and a repeated one of the unchanged spec (median of 3).

Goals (issue 20): the first ≤ 60 s on the 2-core CPU machine (≤ 20 s on a GPU machine), a repeat
< 1 s. Needs a musubi-tuner Python (here the CPU one scripts/musubi-python.sh builds); prints the
figures and writes rehearse_speed-<date>[-<gpu>].json into benchmarks/results/ (or --out).

    uv run python benchmarks/rehearse_speed.py [--python /tmp/fplora-musubi-venv/bin/python] [--runs 3]

On a GPU machine without uv (musubi-tuner and fplora's dependencies on PYTHONPATH, as
benchmarks/gpu_setup/install.sh and the .whl3 wheels put them), from the repo root:

    PYTHONPATH=src:$PYTHONPATH python3 benchmarks/rehearse_speed.py --python "$(command -v python3)" --out DIR

fplora runs as `<this Python> -m fplora` with this checkout's src/ first on PYTHONPATH, so this
Python needs fplora's dependencies; the GPU, when nvidia-smi is there, is recorded as machine.gpu.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def _gpu() -> list[dict[str, str]] | None:
    """The machine's GPUs as nvidia-smi names them (None without nvidia-smi)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    done = subprocess.run(
        [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    cards = [line.split(", ") for line in done.stdout.strip().splitlines() if line.count(", ") == 2]
    return [{"name": n, "memory": m, "driver": d} for n, m, d in cards] or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python", default=os.environ.get("FPLORA_MUSUBI_PYTHON", "/tmp/fplora-musubi-venv/bin/python")
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="folder for the JSON (default: benchmarks/results/)")
    options = parser.parse_args()
    env = {**os.environ, "FPLORA_MUSUBI_PYTHON": options.python, "HF_HUB_OFFLINE": "1"}
    # fplora from this checkout, also where it is not installed (the GPU machine runs it from src/,
    # and the rehearsals run in other folders, where a relative PYTHONPATH=src finds nothing)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure as a user runs it: with bytecode caches
    firsts: list[float] = []
    repeats: list[float] = []
    gpu = _gpu()
    load_before = os.getloadavg()[0]  # a shared machine: the figures mean little without it
    with tempfile.TemporaryDirectory(prefix="fplora-rehearse-speed-") as tmp:
        for run in range(options.runs):
            spec = _project(Path(tmp) / f"p{run}")
            env["FPLORA_MODELS_DIR"] = str(Path(tmp) / "no-models")
            seconds, code, output = _rehearse(spec, env)
            if code != 0 or "not rehearsed" in output:  # a stage skipped for the machine: no timing
                print(output)
                print(f"run {run + 1}: the rehearsal failed or left stages out (exit {code})")
                return 1
            firsts.append(seconds)
            if options.out:  # what each stage took, for reading where the time goes
                options.out.mkdir(parents=True, exist_ok=True)
                (options.out / f"rehearse-run{run + 1}.log").write_text(output, encoding="utf-8")
            print(f"first rehearsal, run {run + 1}: {seconds:.1f} s")
            again, code, output = _rehearse(spec, env)
            if code != 0 or "not run again" not in output:
                print(output)
                print("the repeat did not recognise the unchanged spec")
                return 1
            repeats.append(again)
            print(f"repeat of the unchanged spec, run {run + 1}: {again:.2f} s")
    first, repeat = statistics.median(firsts), statistics.median(repeats)
    print(
        f"median of {options.runs}: first rehearsal {first:.1f} s"
        f" (goal <= {'20 s on a GPU machine' if gpu else '60 s on a 2-core CPU'}),"
        f" repeat {repeat:.2f} s (goal < 1 s)"
    )
    from harness.provenance import measured_on

    result = {
        **measured_on(options.python, gpu),
        "runs": options.runs,
        "first_seconds": [round(s, 2) for s in firsts],
        "repeat_seconds": [round(s, 3) for s in repeats],
        "first_median_seconds": round(first, 2),
        "repeat_median_seconds": round(repeat, 3),
        "note": "the example's base.yaml says gpu: auto; without nvidia-smi fplora asks torch in the"
        " musubi-tuner Python for a GPU (presets/detect.py) once and remembers its answer in .fplora/;"
        " the first rehearsal pays that probe, the repeat reads it",
        "goals": {"first_cpu_seconds": 60, "first_gpu_seconds": 20, "repeat_seconds": 1},
    }
    result["machine"] |= {
        "load_avg_1m": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }
    folder = options.out or REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    model = re.search(r"\b[A-Z]+\d{2,}\b", gpu[0]["name"]) if gpu else None
    card = f"-{model.group().lower()}" if model else "-gpu" if gpu else ""
    out = folder / f"rehearse_speed-{datetime.now(UTC):%Y%m%d}{card}.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"written {out}")
    return 0 if first <= (20 if gpu else 60) and repeat < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
