#!/usr/bin/env python3
"""Issue 23's GPU check: does musubi-tuner's own generate, on the real FramePack weights, make the same
image from `fplora export`'s diffusers layout as from its musubi layout?

Train the e2e run (gpu_e2e.py's `train` stage: 2 steps, dim 32, alpha 16), export its latest LoRA in both
layouts, then generate with each through `fplora infer --no-sweep` (one musubi-tuner generate process
per run, which passes every LoRA file through its own FramePack key conversion), and the musubi layout a
second time for the noise floor of generate on this card. Pass, for every prompt: the diffusers image
differs from the musubi image by no more than the musubi image's two runs differ from each other (largest
per-pixel difference and mean absolute difference), and no prompt failed (generate exits 0 when every
prompt failed, so the images decide, not the exit code). docs/export.md says why the expectation is the
floor itself: at alpha 16 / rank 32 both files merge to the same bf16 weights.

Built on benchmarks/harness/ as gpu_e2e.py is (same weights, dataset, 600-s command rules, `STAGE?`
skipping and --deadline). Run from the repo root with $OUT set, carrying `.whl .whl3 .musubi .hf`
(benchmarks/gpu_setup/prepare.sh):

    set -o pipefail; export FPLORA_REHEARSE=0; python3 benchmarks/export_check.py --deadline 560 \\
        install? weights? data? cache? train? export 2>&1 | tee $OUT/console.log

$OUT/export-check.json then holds the date, card, versions, each layout's file and the per-prompt
differences; $OUT/export-images/ the six images, to be looked at.

Without a GPU: `--local-fake` runs the same stages against gpu_e2e's fake musubi-tuner, in seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import asserts, driver, proc, provenance, specs, state

RUNS = ("musubi", "diffusers", "musubi-again")
# pixel differences of two PNGs: (largest per-pixel difference, mean absolute difference), 0..255 scale
_DIFF = """
import json, sys
import numpy as np
from PIL import Image
a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in sys.argv[1:3])
if a.shape != b.shape:
    print(json.dumps({"shape": [list(a.shape), list(b.shape)]}))
else:
    d = np.abs(a - b)
    print(json.dumps({"max": int(d.max()), "mean": float(d.mean())}))
"""


def _images(root: Path) -> set[Path]:
    return set(root.rglob("*.png")) if root.is_dir() else set()


def _seed(png: Path) -> int | None:
    """generate's file name ends `_<seed>__000.png` (or `_<seed>.png`)."""
    parts = png.stem.replace("__000", "").rsplit("_", 1)
    return int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else None


def _diff(a: Path, b: Path) -> dict[str, Any]:
    python = sys.executable
    done = subprocess.run(
        [python, "-c", _DIFF, str(a), str(b)], capture_output=True, text=True, env=proc.env(), check=False
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["no output"]}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def stage_export(stage: dict[str, Any], checks: asserts.Checks) -> None:
    specs.write_specs()
    spec = str(state.CFG.spec("e2e"))
    env = {"E2E_MAX_STEPS": "2"}  # the spec the train stage ran: same rendered files, no rehearsal anew
    out = state.CFG.root / "export"
    if out.exists():  # an earlier attempt on this machine: export again from scratch
        shutil.rmtree(out)
    ran = proc.fplora(stage, "export", spec, "--lora", "latest", "--out", str(out), extra_env=env)
    checks.rc(ran, what="fplora export e2e.yaml --lora latest (both layouts)")
    files = sorted(out.glob("*.safetensors")) if out.is_dir() else []
    diffusers = [p for p in files if p.stem.endswith("-diffusers")]
    musubi = [p for p in files if not p.stem.endswith("-diffusers")]
    checks.ok(len(musubi) == 1 and len(diffusers) == 1, "one file per layout", [p.name for p in files])
    checks.ok((out / "README.md").is_file(), "model card README.md beside them")
    if not (musubi and diffusers):
        return
    layout = {"musubi": musubi[0], "diffusers": diffusers[0], "musubi-again": musubi[0]}
    stage["files"] = {k: str(v) for k, v in layout.items() if k != "musubi-again"}
    sample = state.CFG.runs / "sample"
    images: dict[str, dict[int, Path]] = {}
    for run in RUNS:
        before = _images(sample)
        t0 = time.time()
        args = ["infer", spec, "--lora", str(layout[run]), "--no-sweep", "--multiplier", "1.0"]
        done = proc.fplora(stage, *args, extra_env=env)
        stage.setdefault("infer_s", {})[run] = round(time.time() - t0, 1)
        checks.rc(done, what=f"fplora infer --lora {layout[run].name} ({run})")
        new = sorted(_images(sample) - before)
        by_seed = {s: p for p in new if (s := _seed(p)) is not None}
        checks.ok(len(by_seed) == state.INFER_PROMPTS, f"{run}: one image per prompt", [p.name for p in new])
        images[run] = by_seed
        for log in {p.parent / "generate.log" for p in new}:
            text = log.read_text(errors="replace") if log.is_file() else ""
            checks.ok("Error generating latent" not in text, f"{run}: no prompt failed ({log.parent.name})")
    keep = state.CFG.out / "export-images"
    keep.mkdir(parents=True, exist_ok=True)
    diffs: dict[str, Any] = {}
    for seed in sorted(images.get("musubi", {})):
        pngs = {run: images[run].get(seed) for run in RUNS}
        if not all(pngs.values()):
            checks.ok(False, f"seed {seed}: an image from every run", {k: str(v) for k, v in pngs.items()})
            continue
        for run, png in pngs.items():
            assert png is not None
            shutil.copy2(png, keep / f"seed{seed}-{run}.png")
        layouts = _diff(pngs["musubi"], pngs["diffusers"])  # type: ignore[arg-type]
        floor = _diff(pngs["musubi"], pngs["musubi-again"])  # type: ignore[arg-type]
        diffs[str(seed)] = {"diffusers_vs_musubi": layouts, "noise_floor": floor}
        within = (
            "max" in layouts
            and "max" in floor
            and layouts["max"] <= floor["max"]
            and layouts["mean"] <= floor["mean"] + 1e-9
        )
        checks.ok(within, f"seed {seed}: diffusers layout within generate's noise floor", diffs[str(seed)])
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "card": provenance.card(),
        "versions": provenance.gpu_versions(),
        "command": "benchmarks/export_check.py " + " ".join(sys.argv[1:]),
        "files": stage.get("files"),
        "infer_s": stage.get("infer_s"),
        "differences_0_255": diffs,
        "passed": not checks.failed,
    }
    stage["result"] = result
    print("EXPORT_CHECK " + json.dumps(result), flush=True)
    (state.CFG.out / "export-check.json").write_text(json.dumps(result, indent=1))


STAGES = {
    # export (seconds) + 3 generate processes, each ~72 s start-up + 2 images on an H100
    "export": state.Stage(stage_export, 280),
}


def main() -> int:
    return driver.run_extension(
        __doc__ or "",
        stages=STAGES,
        local_stages=["install", "weights", "data", "cache", "train", "export"],
        local_root="/tmp/fpe2e-export-local",
        local_records=6,
        harness_fake=True,
    )


if __name__ == "__main__":
    sys.exit(main())
