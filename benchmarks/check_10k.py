"""Benchmark `fplora check` on a 10,000-record one-frame dataset (30,000 images).

Why: `check` opens every image of every dataset before GPU time is spent, and a check that takes
minutes would be skipped. The target is 2 s for `check_spec` on a 2-core machine. The dataset is built
in a temporary folder: one 64x96 PNG written 30,000 times under different names (a target and two
controls per record), a JSONL with relative paths, and a spec YAML.

Run: `uv run python benchmarks/check_10k.py [--records N] [--repeat K]`. It prints:
- building time (not part of the check),
- `read_records` alone, and `check_spec(skip_models=True)` with images probed in one process and with
  the default strategy (processes when there are enough images), best of K runs,
- a plain loop that opens every image header with Pillow in one process, the floor a check that
  looks at every image cannot go much below,
- the whole command from a fresh interpreter, K times (best, median, worst): `fplora check SPEC
  --skip-models` through `uv run` when the CLI has that command, and always `python -c` calling
  `load_spec` + `check_spec`. The README's figure is the `uv run fplora check` line: it is what a
  user waits for.
Files are in the page cache (just written): a cold disk adds I/O time this does not show.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from fplora.check import check_spec
from fplora.check import images as check_images
from fplora.datasets.records import read_records
from fplora.spec import load_spec

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


def run_command(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done


def time_command(repeat: int, command: list[str], cwd: Path) -> tuple[str, subprocess.CompletedProcess[str]]:
    """`best X s, median Y s, worst Z s` of `repeat` runs, and the last run's result."""
    times = []
    done: subprocess.CompletedProcess[str] | None = None
    for _ in range(repeat):
        seconds, done = run_command(command, cwd)
        times.append(seconds)
    assert done is not None
    text = f"best {min(times):.3f} s, median {statistics.median(times):.3f} s, worst {max(times):.3f} s"
    return text, done


def pillow_headers(paths: list[Path]) -> int:
    """Open every image's header with Pillow, as the simplest loop would; returns how many opened."""
    opened = 0
    for path in paths:
        with Image.open(path) as image:
            opened += image.size[0] > 0
    return opened


def cli_has_check() -> bool:
    """Whether `fplora check` exists yet (the CLI is written separately and may lag behind)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fplora", "check", "--help"], capture_output=True, text=True, check=False
        )
    except OSError:
        return False
    return done.returncode == 0 and "skip-models" in done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="fplora-check-bench-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        spec_path = build(root, args.records)
        print(
            f"built {args.records} records / {3 * args.records} images in {time.perf_counter() - start:.2f} s"
        )

        spec = load_spec(spec_path)
        jsonl = spec.datasets[0].jsonl
        best, median, _ = best_of(args.repeat, lambda: read_records(jsonl))
        print(f"read_records:                      best {best:.3f} s, median {median:.3f} s")

        default_min = check_images.PARALLEL_MIN
        check_images.PARALLEL_MIN = sys.maxsize
        best, median, problems = best_of(args.repeat, lambda: check_spec(spec, skip_models=True))
        check_images.PARALLEL_MIN = default_min
        print(f"check_spec, one process:           best {best:.3f} s, median {median:.3f} s")
        best, median, problems = best_of(args.repeat, lambda: check_spec(spec, skip_models=True))
        verdict = "OK" if best <= 2.0 else "OVER the 2 s target"
        print(f"check_spec, default (target 2 s):  best {best:.3f} s, median {median:.3f} s — {verdict}")
        assert isinstance(problems, list)
        print(f"problems found: {len(problems)} (expected 0)")
        for problem in problems[:5]:
            print(f"  {problem}")

        images = sorted((root / "data").glob("*/*.png"))
        best, median, _ = best_of(args.repeat, lambda: pillow_headers(images))
        print(f"Pillow header loop ({len(images)} images): best {best:.3f} s, median {median:.3f} s")

        program = (
            "import sys; from fplora.spec import load_spec; from fplora.check import check_spec;"
            " problems = check_spec(load_spec(sys.argv[1]), skip_models=True);"
            " print(len(problems)); sys.exit(1 if problems else 0)"
        )
        text, done = time_command(args.repeat, [sys.executable, "-c", program, str(spec_path)], root)
        print(f"python -c load_spec+check_spec:    {text} (exit {done.returncode})")
        if cli_has_check():
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
            text, done = time_command(args.repeat, command, root)
            if done.returncode != 0:
                print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
            print(f"uv run fplora check --skip-models: {text} (exit {done.returncode})")
        else:
            print("uv run fplora check: not timed, the CLI has no `check --skip-models` command yet")


if __name__ == "__main__":
    main()
