"""How long `fplora rehearse` takes on the repo's example project: a first rehearsal (median of 3,
each from a fresh copy of the project) and a repeated one of the unchanged spec (median of 3).

A warm-up rehearsal runs first and is reported apart (`warmup_seconds`, with the user-cache folders
that were there before it in `machine_caches_before`): what a machine pays once, whatever the spec
(a compiling spec's kernels on a GPU, ~90 s on an H100; the stand-in DiT), is not a spec's first
rehearsal. `--warmup 0` times a machine's very first one as well. `--profile` adds a rehearsal with
every stage under cProfile (`FPLORA_REHEARSE_PROFILE`), for reading where a GPU box's time goes.

Goals (issue 20): the first ≤ 60 s on the 2-core CPU machine (≤ 20 s on a GPU machine), a repeat
< 1 s. Needs a musubi-tuner Python (here the CPU one scripts/musubi-python.sh builds); prints the
figures and writes rehearse_speed-<date>[-<gpu>].json into benchmarks/results/ (or --out). With
--out, every rehearsal's console output and worker log, and the profiles, go into one tarball beside
the JSON (rehearse_speed-<date>[-<gpu>]-logs.tar.gz), also when a rehearsal failed: a rented GPU box
hands back only a few files per call, so --out holds two.

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
import tarfile
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


def _first(spec: Path, env: dict[str, str], out: Path | None, name: str) -> tuple[float, int]:
    """A first rehearsal of `spec`: its seconds and exit code (1 when it failed or a stage was not
    rehearsed here: then it times nothing). With `out` (the folder the tarball is made of), its
    console output and the worker's log (what each stage printed) are kept there as
    rehearse-<name>.log and rehearse-<name>-worker.log."""
    seconds, code, output = _rehearse(spec, env)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"rehearse-{name}.log").write_text(output, encoding="utf-8")
        worker_log = spec.parent / spec.stem / "rehearsal" / "rehearsal.log"
        if worker_log.is_file():
            shutil.copyfile(worker_log, out / f"rehearse-{name}-worker.log")
    if code != 0 or "not rehearsed" in output:  # a stage skipped for the machine: no timing
        print(output)
        print(f"{name}: the rehearsal failed or left stages out (exit {code})")
        return seconds, 1
    return seconds, 0


def _bundle(logs: Path, tarball: Path) -> None:
    """The logs and profiles gathered in `logs`, as one tarball (nothing when there are none)."""
    files = sorted(p for p in logs.rglob("*") if p.is_file())
    if not files:
        return
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "w:gz") as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(logs)))
    print(f"written {tarball} ({len(files)} files)")


def _name(gpu: list[dict[str, str]] | None) -> str:
    """rehearse_speed-<date>[-<card>]: the results' file name, without its extension."""
    model = re.search(r"\b[A-Z]+\d{2,}\b", gpu[0]["name"]) if gpu else None
    card = f"-{model.group().lower()}" if model else "-gpu" if gpu else ""
    return f"rehearse_speed-{datetime.now(UTC):%Y%m%d}{card}"


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


def _measure(
    tmp: Path,
    env: dict[str, str],
    logs: Path | None,
    options: argparse.Namespace,
    warmups: list[float],
    firsts: list[float],
    repeats: list[float],
) -> int:
    """The warm-up, timed and profiled rehearsals, each of a fresh copy of the example project in
    `tmp`; their figures appended to the lists, their logs (and profiles) kept in `logs`. 0 when
    each passed and each repeat was recognised, else 1."""
    env["FPLORA_MODELS_DIR"] = str(tmp / "no-models")
    for run in range(options.warmup):
        seconds, code = _first(_project(tmp / f"w{run}"), env, logs, f"warmup{run + 1}")
        if code != 0:
            return 1
        warmups.append(seconds)
        print(f"warm-up rehearsal {run + 1} (not counted): {seconds:.1f} s")
    for run in range(options.runs):
        spec = _project(tmp / f"p{run}")
        seconds, code = _first(spec, env, logs, f"run{run + 1}")
        if code != 0:
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
    if options.profile:
        folder = (logs or tmp) / "profile"
        profiled = {**env, "FPLORA_REHEARSE_PROFILE": str(folder)}
        seconds, _ = _first(_project(tmp / "profiled"), profiled, logs, "profiled")
        kept = "profile/ in the tarball" if logs else folder
        print(f"profiled rehearsal (not counted): {seconds:.1f} s; profiles: {kept}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python", default=os.environ.get("FPLORA_MUSUBI_PYTHON", "/tmp/fplora-musubi-venv/bin/python")
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="first rehearsals of fresh projects before the timed ones, not counted: what a machine"
        " pays once (a compiling spec's kernels on a GPU, the stand-in DiT) is reported apart",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one more first rehearsal, not counted, with each stage under cProfile and the"
        " worker's timeline (FPLORA_REHEARSE_PROFILE), kept as profile/ in --out's tarball",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for the JSON and the tarball of logs and profiles (default: the JSON alone, into"
        " benchmarks/results/)",
    )
    parser.add_argument("--note", help="what this measurement is of (a change, a machine): said in the JSON")
    options = parser.parse_args()
    env = {**os.environ, "FPLORA_MUSUBI_PYTHON": options.python, "HF_HUB_OFFLINE": "1"}
    # fplora from this checkout, also where it is not installed (the GPU machine runs it from src/,
    # and the rehearsals run in other folders, where a relative PYTHONPATH=src finds nothing)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure as a user runs it: with bytecode caches
    firsts: list[float] = []
    repeats: list[float] = []
    warmups: list[float] = []
    gpu = _gpu()
    load_before = os.getloadavg()[0]  # a shared machine: the figures mean little without it
    from fplora.state import user_cache

    caches_before = sorted(p.name for p in user_cache().glob("*rehears*"))
    with tempfile.TemporaryDirectory(prefix="fplora-rehearse-speed-") as tmp:
        logs = Path(tmp) / "logs" if options.out else None
        try:
            code = _measure(Path(tmp), env, logs, options, warmups, firsts, repeats)
        finally:
            if logs is not None and options.out is not None:
                _bundle(logs, options.out / f"{_name(gpu)}-logs.tar.gz")
        if code != 0:
            return code
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
        "warmup_seconds": [round(s, 2) for s in warmups],
        "machine_caches_before": caches_before,
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
    if options.note:
        result["note"] = f"{options.note}; {result['note']}"
    folder = options.out or REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{_name(gpu)}.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"written {out}")
    return 0 if first <= (20 if gpu else 60) and repeat < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
