"""Inference stage: `fplora infer` with two multipliers on a checkpoint of the e2e run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness import state
from harness.asserts import Checks, manifest, png_size
from harness.proc import fplora
from harness.specs import write_specs
from harness.state import INFER_PROMPTS, Stage
from harness.timings import guarded, infer_timings


def stage_infer(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    segs = (manifest("e2e") or {}).get("segments") or []
    resumed = len(segs) >= 2 and segs[1].get("exit_code") == 0
    lora, step = ("step3", 3) if resumed else ("latest", 2)
    stage["lora"] = lora
    multipliers = ("1.0", "1.2")
    sample = state.CFG.runs / "sample"
    before = set(sample.glob("*/*__000.png")) if sample.is_dir() else set()
    # one generate process per multiplier, as proven on the H100s: the sweep worker that `infer` uses
    # for two or more cells has its own benchmark (benchmarks/sweep_speed.py)
    args = ["infer", str(state.CFG.spec("e2e")), "--lora", lora, "--no-sweep"]
    for m in multipliers:
        args += ["--multiplier", m]
    ran = fplora(stage, *args, extra_env={"E2E_MAX_STEPS": "4"})
    checks.rc(ran, what=f"fplora infer --lora {lora} --no-sweep --multiplier 1.0 --multiplier 1.2")
    stage["timings"] = guarded(checks, infer_timings, ran, INFER_PROMPTS)
    new = sorted(set(sample.glob("*/*__000.png")) - before) if sample.is_dir() else []
    by_dir: dict[str, list[Path]] = {}
    for png in new:
        by_dir.setdefault(png.parent.name, []).append(png)
    stage["image_dirs"] = {d: [p.name for p in pngs] for d, pngs in by_dir.items()}
    # the folder name is fplora's (sample/<version>-stepNNNNNNNN-lm<multiplier>): find it, then read it
    found = {}
    for name in by_dir:
        match = re.match(rf"^e2e-step{step:08d}-lm(\d+(?:\.\d+)?)$", name)
        if match:
            found[float(match[1])] = name
    checks.ok(
        sorted(found) == [1.0, 1.2],
        f"one folder per multiplier: sample/e2e-step{step:08d}-lm<m> for 1.0 and 1.2",
        sorted(by_dir),
    )
    for name in found.values():
        pngs = by_dir[name]
        checks.ok(
            len(pngs) == INFER_PROMPTS, f"{INFER_PROMPTS} new images in sample/{name}", [p.name for p in pngs]
        )
        seeds = sorted(
            int(m[1]) for p in pngs if (m := re.match(r"^\d{8}-\d{6}-\d{3}_(\d+)__000\.png$", p.name))
        )
        checks.ok(seeds == [42, 43], f"{name}: one image per prompt (seeds 42, 43)", seeds)
        for png in pngs[:1]:
            shape = (state.CFG.width, state.CFG.height)
            checks.ok(png_size(png) == shape, f"{png.name} is {shape[0]}x{shape[1]}", png_size(png))
        log = sample / name / "generate.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        checks.ok(log.is_file(), f"{name}/generate.log")
        checks.ok("Error generating latent" not in text, f"{name}: no prompt failed (fp32/bf16 trap)")
    if not checks.failed:
        (state.CFG.marks / "infer.ok").write_text("ok\n")


STAGES = {
    # 2 multipliers = 2 generate processes, each ~72 s start-up + 2 images
    "infer": Stage(stage_infer, 240, lambda: (state.CFG.marks / "infer.ok").is_file()),
}
