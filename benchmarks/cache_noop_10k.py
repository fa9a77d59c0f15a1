"""Benchmark a no-op `fplora cache` on a 10,000-record one-frame dataset (30,000 images).

Why: `fplora cache` keys every record by its images' content and caption (`datasets/cache_keys.py`) to
find it in the project's cache store; a no-op must stay cheap enough to run before every training
(`fplora train --cache`). Goal (issue 22): ≤ 1 s on this machine, the whole command from a fresh
interpreter, median of 3.

The dataset is built in a temporary folder: 30,000 distinct 64x96 PNGs (a target and two controls
per record, one pixel apart), a JSONL with relative paths and distinct captions, stand-in model
files, and a spec. The store is filled once by a real `fplora cache` against the repo's fake
musubi-tuner (`tests/fakes/fake_python`, which writes the files the real scripts would); that run
also hashes every image once and remembers the hashes. Then, median and best of `--repeat` runs:
- the whole no-op command, `python -m fplora cache SPEC` in a fresh interpreter (the goal), with
  bytecode caches warm (the first run writes them);
- a second version (`extends:` the first, same data): its first `fplora cache` links 20,000 files
  and computes nothing;
- the store comparison alone in-process (`caches.views`: stats, remembered hashes, one listing per
  folder, one readlink per link).

Run: `uv run python benchmarks/cache_noop_10k.py [--records N] [--repeat K] [--json FILE]`.
Files are in the page cache (just written): a cold disk adds I/O time this does not show.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FAKE_PYTHON = REPO / "tests" / "fakes" / "fake_python"
SIZE = (64, 96)
GOAL_S = 1.0


def _png(number: int, which: int) -> bytes:
    image = Image.new("RGB", SIZE, (200, 120, 40))
    image.putpixel(
        (number % SIZE[0], (number // SIZE[0]) % SIZE[1]), (which, number % 256, number // 256 % 256)
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _model(path: Path, name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"__metadata__": {"stand_in": name}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def build(root: Path, records: int) -> Path:
    """Images, JSONL, stand-in models and `configs/v1.yaml`; return the spec's path."""
    data = root / "data"
    folders = ("targets", "start", "end")
    for folder in folders:
        (data / folder).mkdir(parents=True)
    lines = []
    for number in range(records):
        name = f"{number:06d}.png"
        for which, folder in enumerate(folders):
            (data / folder / name).write_bytes(_png(number, which))
        item = {
            "image_path": f"targets/{name}",
            "control_path_0": f"start/{name}",
            "control_path_1": f"end/{name}",
            "caption": f"a character turns around, picture {number}",
        }
        lines.append(json.dumps(item))
    (data / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    models = root / "models"
    for relative in (
        "dit/diffusion_pytorch_model-00001-of-00003.safetensors",
        "dit/diffusion_pytorch_model-00002-of-00003.safetensors",
        "dit/diffusion_pytorch_model-00003-of-00003.safetensors",
        "vae.safetensors",
        "te1.safetensors",
        "te2.safetensors",
        "siglip.safetensors",
    ):
        _model(models / relative, relative)
    configs = root / "configs"
    configs.mkdir()
    spec = configs / "v1.yaml"
    spec.write_text(
        f"""project: bench
models:
  dir: {models}
  dit: dit/diffusion_pytorch_model-00001-of-00003.safetensors
  vae: vae.safetensors
  text_encoder1: te1.safetensors
  text_encoder2: te2.safetensors
  image_encoder: siglip.safetensors
data:
  resolution: [{SIZE[0]}, {SIZE[1]}]
datasets:
  - jsonl: ../data/metadata.jsonl
one_frame:
  clean_indices: [0, 10]
  target_index: 5
train:
  output_dir: ../out
  optimizer:
    type: adamw8bit
sample:
  at_first: false
  every_n_steps: null
  prompts:
    - record: 1
""",
        encoding="utf-8",
    )
    return spec


def fplora(root: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """`python -m fplora <args>` as a user runs it: with bytecode caches (kept under the benchmark's
    folder; a `PYTHONDONTWRITEBYTECODE` environment would otherwise compile every module each run,
    about a second here)."""
    env = {
        **os.environ,
        "FPLORA_MUSUBI_PYTHON": str(FAKE_PYTHON),
        "PYTHONPYCACHEPREFIX": str(root / "pycache"),
    }
    env.pop("FAKE_RECORD", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "fplora", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return time.perf_counter() - start, done


def timed(repeat: int, work: object) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here (benchmarks/results/...)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fplora-cache-bench-"))
    load = os.getloadavg()[0]
    figures: dict[str, object] = {
        "load_average_1min_at_start": round(load, 2),
        "benchmark": "cache_noop_10k",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {sys.version.split()[0]}",
        "records": args.records,
        "repeat": args.repeat,
        "goal_s": GOAL_S,
    }
    try:
        start = time.perf_counter()
        spec = build(root, args.records)
        print(
            f"built {args.records} records ({3 * args.records} images) in {time.perf_counter() - start:.1f} s"
        )
        seconds, first = fplora(root, "cache", str(spec))
        if first.returncode != 0:
            print(first.stdout + first.stderr)
            return 1
        figures["first_cache_s"] = round(seconds, 2)
        print(f"first fplora cache (fake musubi-tuner computes {2 * args.records} files): {seconds:.1f} s")

        fplora(root, "cache", str(spec))  # bytecode caches written
        runs = []
        for _ in range(args.repeat):
            seconds, done = fplora(root, "cache", str(spec))
            assert done.returncode == 0 and "nothing to do" in done.stderr, done.stderr
            runs.append(seconds)
        figures["noop_cache_best_s"] = round(min(runs), 3)
        figures["noop_cache_median_s"] = round(statistics.median(runs), 3)
        print(
            f"no-op fplora cache: median {statistics.median(runs):.3f} s, best {min(runs):.3f} s"
            f" (goal ≤ {GOAL_S} s)"
        )

        second = spec.parent / "v1b.yaml"
        second.write_text("extends: v1.yaml\ntrain:\n  max_train_steps: 200\n", encoding="utf-8")
        seconds, done = fplora(root, "cache", str(second))
        assert done.returncode == 0 and "to compute" not in done.stderr, done.stderr
        figures["second_version_first_cache_s"] = round(seconds, 3)
        print(
            f"a second version's first fplora cache (links {2 * args.records} files, computes none):"
            f" {seconds:.2f} s"
        )

        sys.path.insert(0, str(REPO / "src"))
        os.chdir(root)
        from fplora.datasets import caches, split
        from fplora.datasets.records import RecordCache
        from fplora.spec import load_spec

        loaded = load_spec(spec)

        def views() -> None:
            records = split.entry_records(loaded, RecordCache(loaded))
            assert all(v.complete for v in caches.views(loaded, records))

        best, median = timed(args.repeat, views)
        figures["views_inprocess_best_s"] = round(best, 3)
        figures["views_inprocess_median_s"] = round(median, 3)
        print(f"store comparison alone (in-process): median {median:.3f} s, best {best:.3f} s")
        figures["goal_met"] = statistics.median(runs) <= GOAL_S
    finally:
        os.chdir(REPO)
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
