"""Benchmark `fplora check` on a 10,000-record one-frame dataset (30,000 images).

Why: `check` decodes every image of every dataset once (a PNG with a whole header but cut pixels
passes a header check and stops musubi-tuner's caching after the models are loaded), and remembers
each verdict by path, size and time in the project's `.fplora/`. A check that takes minutes would be
skipped, so the goals, measured in one run on the same files:
- a repeated check ≤ 0.5× a plain Pillow loop that opens every header (what the old header-only check
  had to do each time);
- the first check's full decode no slower than a plain single-process loop that decodes every image.
The dataset is built in a temporary folder: one 64x96 PNG written 30,000 times under different names
(a target and two controls per record), a JSONL with relative paths, and a spec YAML.

Run: `uv run python benchmarks/check_10k.py [--records N] [--repeat K] [--json FILE] [--no-command]`
(`PYTHONPATH=<another checkout>/src` with `--no-command` times that checkout's code). It prints, best
and median of K runs each:
- `read_records` alone (not part of the goals);
- the plain loops: Pillow headers, and Pillow full decode in one process;
- the first check (`check_spec(skip_models=True)` with no verdicts stored), its image step alone
  (`verify_many`, decoding here and in helper processes), and that step kept in this process (no
  helpers: whether they pay on this machine at this load);
- a repeated check, and its image step alone (only `stat`s and the stored verdicts);
  these seven are timed in rounds, each kind once per round, so that a ratio compares figures taken
  side by side on a machine whose load changes (the 1-minute load average is recorded per round),
  and their CPU time, helpers included;
- the whole command from a fresh interpreter, repeated: `uv run fplora check SPEC --skip-models`,
  as this environment runs it, and again with Python's bytecode cache allowed (in a temporary
  `PYTHONPYCACHEPREFIX`): where `PYTHONDONTWRITEBYTECODE` is set, as on the team's machine, every run
  compiles some 150 modules from source (~0.4 s), which an installed fplora does not;
and the goal ratios. `--json` writes the figures with the date, machine and versions.
Files are in the page cache (just written): a cold disk adds I/O time this does not show.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from fplora.check import check_spec, verified
from fplora.check.verified import verify_many
from fplora.datasets.records import read_records
from fplora.spec import load_spec
from fplora.state import project_state

SIZE = (64, 96)
REPO = Path(__file__).resolve().parents[1]


def build(root: Path, records: int) -> Path:
    """Write the images, the JSONL and the spec; return the spec's path."""
    buffer = io.BytesIO()
    Image.new("RGB", SIZE, (200, 120, 40)).save(buffer, "PNG")
    png = buffer.getvalue()
    data = root / "data"
    for folder in ("targets", "start", "end"):
        (data / folder).mkdir(parents=True)
    lines = []
    for number in range(records):
        name = f"{number:06d}.png"
        for folder in ("targets", "start", "end"):
            (data / folder / name).write_bytes(png)
        lines.append(
            json.dumps(
                {
                    "image_path": f"targets/{name}",
                    "control_path_0": f"start/{name}",
                    "control_path_1": f"end/{name}",
                    "caption": f"a character turns around, picture {number}",
                }
            )
        )
    (data / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = root / "bench.yaml"
    spec.write_text(
        f"""project: bench
models:
  dir: {root / "models"}
  dit: dit/diffusion_pytorch_model-00001-of-00003.safetensors
  vae: vae.safetensors
  text_encoder1: te1/model-00001-of-00004.safetensors
  text_encoder2: te2.safetensors
  image_encoder: siglip.safetensors
data:
  resolution: [{SIZE[0]}, {SIZE[1]}]
datasets:
  - jsonl: data/metadata.jsonl
one_frame:
  clean_indices: [0, 10]
  target_index: 5
train:
  output_dir: out
sample:
  at_first: false
  every_n_steps: null
  prompts:
    - record: 1
""",
        encoding="utf-8",
    )
    return spec


def best_of(repeat: int, work: Callable[[], object]) -> tuple[float, float, object]:
    """(best, median, last result) of `repeat` timed calls."""
    times = []
    result: object = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


def run_command(
    command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    return time.perf_counter() - start, done


def cpu_seconds() -> float:
    """CPU time of this process and of its ended child processes (the decode helpers): unlike the
    wall time, it does not grow with other work on the machine (much)."""
    used = os.times()
    return used.user + used.system + used.children_user + used.children_system


def pillow_headers(paths: list[Path]) -> int:
    """Open every image's header with Pillow, as the simplest loop would; returns how many opened."""
    opened = 0
    for path in paths:
        with Image.open(path) as image:
            opened += image.size[0] > 0
    return opened


def pillow_decode(paths: list[Path]) -> int:
    """Decode every image with Pillow in one process, as the simplest full check would."""
    decoded = 0
    for path in paths:
        with Image.open(path) as image:
            image.load()
            decoded += image.size[0] > 0
    return decoded


@contextmanager
def no_helpers() -> Iterator[None]:
    """`verify_many` as on a machine of one CPU: every image decoded in this process."""
    real = verified._workers
    verified._workers = lambda: 1
    try:
        yield
    finally:
        verified._workers = real


def here_only(paths: list[str], state: Path) -> object:
    with no_helpers():
        return verify_many(paths, state, progress=False)


def versions() -> dict[str, str]:
    import PIL

    import fplora
    from fplora import __version__

    # the checkout of the fplora imported (PYTHONPATH=<another checkout>/src times another commit)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=Path(fplora.__file__).parent,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "python": sys.version.split()[0],
        "pillow": PIL.__version__,
        "fplora": __version__,
        "commit": commit,
    }


def machine() -> dict[str, object]:
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "system": platform.platform(),
        "load_avg_1m": load and load[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here (benchmarks/results/...)")
    parser.add_argument(
        "--no-command", action="store_true", help="leave out the whole command's timings (this checkout's)"
    )
    args = parser.parse_args()
    figures: dict[str, object] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "records": args.records,
        "images": 3 * args.records,
        "repeat": args.repeat,
    }
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}")
    seconds: dict[str, dict[str, float]] = {}

    def report(name: str, label: str, best: float, median: float) -> None:
        seconds[name] = {"best": round(best, 4), "median": round(median, 4)}
        print(f"{label:<44} best {best:.3f} s, median {median:.3f} s")

    with tempfile.TemporaryDirectory(prefix="fplora-check-bench-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        spec_path = build(root, args.records)
        print(
            f"built {args.records} records / {3 * args.records} images in {time.perf_counter() - start:.2f} s"
        )
        state = project_state(spec_path)
        spec = load_spec(spec_path)
        jsonl = spec.datasets[0].jsonl
        report("read_records", "read_records:", *best_of(args.repeat, lambda: read_records(jsonl))[:2])
        images = sorted((root / "data").glob("*/*.png"))
        paths = [str(path) for path in images]
        check = lambda: check_spec(spec, skip_models=True, progress=False)  # noqa: E731
        work: dict[str, tuple[str, Callable[[], object], bool]] = {
            "pillow_headers": (
                f"Pillow header loop ({len(images)} images):",
                lambda: pillow_headers(images),
                False,
            ),
            "pillow_decode": ("Pillow decode loop, one process:", lambda: pillow_decode(images), False),
            "first_check": ("first check_spec (every image decoded):", check, True),
            "first_images": (
                "  its image step (verify_many, fresh):",
                lambda: verify_many(paths, state, progress=False),
                True,
            ),
            "first_images_here": (
                "  the same in this process alone:",
                lambda: here_only(paths, state),
                True,
            ),
            "repeated_check": ("repeated check_spec (verdicts stored):", check, False),
            "repeated_images": (
                "  its image step (verify_many, stored):",
                lambda: verify_many(paths, state, progress=False),
                False,
            ),
        }
        # rounds, each timing every kind once in turn: on a shared machine the load changes by the
        # second, and a ratio is only fair between figures taken side by side
        times: dict[str, list[float]] = {name: [] for name in work}
        cpu: dict[str, list[float]] = {name: [] for name in work}
        problems: object = None
        loads = []
        for _ in range(args.repeat):
            loads.append(round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None)
            for name, (_, job, fresh) in work.items():
                if fresh:
                    shutil.rmtree(state, ignore_errors=True)
                else:
                    verify_many(paths, state, progress=False)  # the store in place (a no-op once it is)
                start, used = time.perf_counter(), cpu_seconds()
                result = job()
                times[name].append(time.perf_counter() - start)
                cpu[name].append(cpu_seconds() - used)
                if name == "repeated_check":
                    problems = result
        for name, (label, _, _) in work.items():
            report(name, label, min(times[name]), statistics.median(times[name]))
        figures["cpu_seconds_median"] = {name: round(statistics.median(cpu[name]), 3) for name in work}
        print("CPU seconds (this process and its helpers), medians:", figures["cpu_seconds_median"])
        assert isinstance(problems, list)
        print(f"problems found: {len(problems)} (expected 0)")
        for problem in problems[:5]:
            print(f"  {problem}")
        figures["problems"] = len(problems)
        figures["load_avg_1m_per_round"] = loads
        print(f"1-minute load average at each round's start: {loads}")
        figures["load_avg_1m_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

        if not args.no_command:  # `uv run` runs this checkout's fplora, whatever was imported
            command = [
                "uv",
                "run",
                "--project",
                str(REPO),
                "fplora",
                "check",
                str(spec_path),
                "--skip-models",
            ]
            runs = []
            for _ in range(args.repeat):
                took, done = run_command(command, root)
                runs.append(took)
            if done.returncode != 0:
                print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
            report(
                "repeated_command",
                "uv run fplora check --skip-models, repeated:",
                min(runs),
                statistics.median(runs),
            )
            cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            cached["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
            run_command(command, root, cached)  # writes the bytecode once
            runs = [run_command(command, root, cached)[0] for _ in range(args.repeat)]
            report(
                "repeated_command_bytecode",
                "  the same, bytecode cached:",
                min(runs),
                statistics.median(runs),
            )

    def ratio(name: str, base: str) -> float:
        return round(seconds[name]["median"] / seconds[base]["median"], 3)

    goals = {
        "repeated_check_vs_headers": ratio("repeated_check", "pillow_headers"),
        "repeated_images_vs_headers": ratio("repeated_images", "pillow_headers"),
        "first_check_vs_decode_loop": ratio("first_check", "pillow_decode"),
        "first_images_vs_decode_loop": ratio("first_images", "pillow_decode"),
        "first_images_here_vs_decode_loop": ratio("first_images_here", "pillow_decode"),
    }
    print("goal ratios (medians): repeated ≤ 0.5 × header loop, first ≤ 1.0 × decode loop")
    for name, value in goals.items():
        limit = 0.5 if name.startswith("repeated") else 1.0
        print(f"  {name}: {value} ({'met' if value <= limit else 'NOT met'}, limit {limit})")
    figures["seconds"] = seconds
    figures["ratios"] = goals
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
