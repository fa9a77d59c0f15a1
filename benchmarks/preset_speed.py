#!/usr/bin/env python3
"""Side-by-side training speed on one GPU: the memo's settings against fplora's GPU preset and the
levers musubi-tuner offers, at the same effective batch (16), in one session on the same machine.

Issue 12's goal: the H200 preset trains at least 1.3x the memo's samples per second (reach for 1.6x)
within its memory headroom. This script is that measurement. First run 2026-11-30 on one H200, in
three calls on one warm machine (docs/presets.md): the memo's 0.714 samples/s, the uncompiled preset
1.47x, with torch.compile 2.08x (now the h200 preset). One call that has them side by side:

    set -o pipefail; python3 benchmarks/preset_speed.py --deadline 560 install? weights? data? cache? \\
        speed-memo speed-preset speed-nocompile speed-report 2>&1 | tee $OUT/console.log

`speed-auto` is what `gpu: auto` chooses on the card it runs on (issue 21 wants it at 2x the memo's
settings on an H100 and an H200, side by side in one command); the report says what it chose and
whether it reached that (`goal_auto_2x`):

    set -o pipefail; python3 benchmarks/preset_speed.py --deadline 560 install? weights? data? cache? \\
        speed-memo speed-auto speed-report 2>&1 | tee $OUT/console.log

Another shape (issue 21 asks for two more per card) runs in a root of its own, where its dataset,
caches and runs are made at that shape; the weights in /tmp/models are shared:

    python3 benchmarks/preset_speed.py --root /tmp/fpe2e-768x512 --shape 768x512 --controls 1 \\
        --deadline 560 install? weights? data? cache? speed-memo speed-auto speed-report

It is `benchmarks/gpu_e2e.py` with extra stages: the same install/weights/data/check/cache stages,
`STAGE?` skipping, `--deadline`, `$OUT/summary.json` and `logs.tgz`, nvidia-smi sampling, and the same
step-timing parser (musubi-tuner's own progress bar, steady steps, step 1 excluded). Run from the repo
root on the GPU machine, carrying `.whl .whl3 .musubi .hf` (benchmarks/gpu_setup/prepare.sh, docs/gpu-e2e.md).
The other variants (sampled: compile with training's own sampling; b16-swap0, b2-swap12, offload,
tf32, flash) and `doctor` are stages too.

Every variant extends `speedbase.yaml`: gpu_e2e's memo base without `blocks_to_swap` and
`gradient_checkpointing`, so that a preset can choose them; `speed-memo` writes the memo's values back.
Each variant trains STEPS optimizer steps (3, each of 16 samples; steps 2 and 3 are timed) with no
saves and no samples. Results accumulate in <root>/speed.json across commands on a warm machine;
`speed-report` prints every variant's samples/s, its ratio to the memo's, and its peak memory against
the 5 % headroom rule, into summary.json. `doctor` runs `fplora doctor` on speed-memo.yaml and keeps
its output in $OUT/doctor.txt (for docs/presets.md).

Locally, `--local-fake install weights data check cache speed-memo speed-preset speed-nocompile
speed-report` runs the same stages against gpu_e2e's fake musubi-tuner, to test this script's plumbing
in seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import asserts, driver, proc, specs, state, timings
from harness.stages import train

EFFECTIVE = 16  # the memo's batch, and the effective batch every variant keeps
STEPS = 3  # step 1 (warm-up) is never timed: two steady steps of 16 samples each

# name -> (what it tries, the lines of `train:` / top-level YAML the variant adds to speedbase.yaml)
VARIANTS: dict[str, tuple[str, str]] = {
    "memo": (
        "the memo's settings: batch 16, blocks_to_swap 20, gradient checkpointing",
        "train:\n  blocks_to_swap: 20\n  gradient_checkpointing: true\n",
    ),
    "preset": (
        "fplora's h200 preset, as `gpu: h200` chooses it (batch 1 x 16, no recomputation, torch.compile)",
        "gpu: h200\n",
    ),
    "auto": (
        "what `gpu: auto` chooses on this card (issue 21: twice the house settings on an H100 and an H200)",
        "gpu: auto\n",
    ),
    "sampled": (
        "the h200 preset (compiled) with training's own sampling after every step: compile's check",
        "gpu: h200\nsample:\n  every_n_steps: 1\n",
    ),
    "nocompile": (
        "the h200 preset without torch.compile (batch 1 x 16, no recomputation)",
        "gpu: h200\ntrain:\n  compile: false\n",
    ),
    "b16-swap0": (
        "batch 16, no swap, gradient checkpointing",
        "train:\n  blocks_to_swap: 0\n  gradient_checkpointing: true\n  gradient_accumulation_steps: 1\n",
    ),
    "b2-swap12": (
        "batch 2 x 8, no recomputation, 12 blocks swapped with pinned memory (batch 2 alone had no margin)",
        "data: {batch_size: 2}\ntrain:\n  gradient_accumulation_steps: 8\n  gradient_checkpointing: false\n"
        "  blocks_to_swap: 12\nmusubi:\n  config: {use_pinned_memory_for_block_swap: true}\n",
    ),
    "offload": (
        "batch 16, no swap, checkpointing with its CPU offload",
        "train:\n  blocks_to_swap: 0\n  gradient_checkpointing: true\n  gradient_accumulation_steps: 1\n"
        "musubi:\n  config: {gradient_checkpointing_cpu_offload: true}\n",
    ),
    "tf32": (
        "the h200 preset (compiled) with TF32 matmuls allowed",
        "gpu: h200\nmusubi:\n  config: {cuda_allow_tf32: true}\n",
    ),
    "flash": (
        "the h200 preset with flash attention (if flash_attn is installed)",
        "gpu: h200\ntrain:\n  attention: flash_attn\n",
    ),
}
COST_S = 100 + 20 * STEPS  # start-up to step 1 (83 s for the memo's settings on an H200) + ~17 s per step


def speed_file() -> Path:
    return state.CFG.root / "speed.json"


def results() -> dict[str, Any]:
    path = speed_file()
    return json.loads(path.read_text()) if path.is_file() else {}


def write_specs() -> None:
    """speedbase.yaml (gpu_e2e's base, free of the two settings a preset chooses) and one spec per variant."""
    specs.write_specs()
    base = specs.spec_texts()["base"]
    dropped = ("  blocks_to_swap: 20\n", "  gradient_checkpointing: true\n")
    for line in dropped:
        assert line in base, f"gpu_e2e's base no longer has {line.strip()!r}"
        base = base.replace(line, "")
    state.CFG.spec("speedbase").write_text(base)
    for name, (what, text) in VARIANTS.items():
        body = f"# benchmarks/preset_speed.py: {what}\nextends: speedbase.yaml\n{text}"
        steps = f"  max_train_steps: {STEPS}\n  save_every_n_steps: null\n  save_state: false\n"
        steps += "  save_state_on_train_end: false\n"
        body = (
            body.replace("train:\n", "train:\n" + steps, 1)
            if "train:\n" in body
            else body + "train:\n" + steps
        )
        state.CFG.spec(f"speed-{name}").write_text(body)


def stage_variant(name: str) -> Any:
    def run(stage: dict[str, Any], checks: Any) -> None:
        write_specs()
        version = f"speed-{name}"
        if name == "flash" and not state.CFG.local:
            probe = proc.run(stage, [sys.executable, "-c", "import flash_attn"])
            if probe.rc != 0:
                stage["skipped"] = "flash_attn is not installed in the musubi-tuner Python"
                _record(name, {"skipped": stage["skipped"]})
                return
        train._fresh_run(stage, version)
        for png in (state.CFG.runs / "sample").glob(f"{state.CFG.output_name(version)}_*.png"):
            png.unlink()  # samples of an earlier run of this stage: judge this run's own
        dry = proc.fplora(stage, "train", str(state.CFG.spec(version)), "--dry-run")
        stage["preset_lines"] = [text for _, text in dry.lines if text.startswith(("note: gpu", "estimate:"))]
        ran = proc.fplora(stage, "train", str(state.CFG.spec(version)))
        timing = timings.guarded(checks, timings.step_timings, ran, EFFECTIVE)
        stage["timings"] = timing
        entry = {
            "what": VARIANTS[name][0],
            "shape": f"{state.CFG.width}x{state.CFG.height}, {state.CFG.controls} control image(s)",
            "rc": ran.rc,
            "s_per_step": timing.get("s_per_step"),
            "samples_per_s": timing.get("samples_per_s"),
            "peak_MiB_in_steps": timing.get("gpu_peak_MiB_in_steps"),
            # the whole training command's peak (the stage's own is only known after it returns)
            "peak_MiB_run": max(state.GPU.peaks(ran.t0, ran.t1).values(), default=None)
            if state.GPU
            else None,
            "preset_lines": stage["preset_lines"],
            "oom": any("out of memory" in text.lower() for _, text in ran.lines),
        }
        _record(name, entry)
        if name in ("memo", "preset", "sampled"):
            checks.rc(ran, what=f"fplora train {version}.yaml")
            checks.ok(entry["samples_per_s"], f"{version}: samples/s measured", timing.get("bar_elapsed_s"))
        if name == "sampled":  # the compiled DiT also samples, under no_grad and at another shape
            asserts.check_samples(checks, state.CFG.output_name(version), range(1, STEPS + 1), at_first=False)
            stage["sample_s_after_step"] = timing.get("sample_and_save_s_after_step")

    return run


def _record(name: str, entry: dict[str, Any]) -> None:
    found = results()
    found[name] = entry
    speed_file().write_text(json.dumps(found, indent=1))


def _memory_mib() -> int | None:
    names = state.SUMMARY.get("gpu_names") or []
    try:
        return int(names[0].split(",")[1].strip().split()[0])
    except (IndexError, ValueError):
        return None


def stage_report(stage: dict[str, Any], checks: Any) -> None:
    found = results()
    memo = (found.get("memo") or {}).get("samples_per_s")
    memory = _memory_mib()
    rows = {}
    for name, entry in found.items():
        rate = entry.get("samples_per_s")
        peak = entry.get("peak_MiB_run")
        rows[name] = {
            **entry,
            "ratio_to_memo": round(rate / memo, 3) if rate and memo else None,
            "headroom": round(1 - peak / memory, 4) if peak and memory else None,
            "within_5pct_headroom": bool(peak and memory and peak <= 0.95 * memory),
        }
        print(
            f"speed {name:>10}: {rate} samples/s, x{rows[name]['ratio_to_memo']} the memo's,"
            f" peak {peak} MiB, headroom {rows[name]['headroom']}",
            flush=True,
        )
    stage["report"] = rows
    preset = rows.get("preset", {}).get("ratio_to_memo")
    others = [n for n, row in rows.items() if n != "memo" and row["ratio_to_memo"] is not None]
    checks.ok(memo and others, "the memo's settings and another variant measured", sorted(rows))
    stage["goal_1_3x"] = bool(preset and preset >= 1.3 and rows["preset"]["within_5pct_headroom"])
    auto = rows.get("auto", {})
    if auto:  # issue 21: `gpu: auto` at >= 2x the house settings with >= 5 % of the card free
        ratio = auto.get("ratio_to_memo")
        stage["goal_auto_2x"] = bool(ratio and ratio >= 2.0 and auto["within_5pct_headroom"])
        stage["auto_chose"] = auto.get("preset_lines")
    (state.CFG.out / "preset_speed.json").write_text(json.dumps(rows, indent=1))


def stage_doctor(stage: dict[str, Any], checks: Any) -> None:
    write_specs()
    ran = proc.fplora(stage, "doctor", str(state.CFG.spec("speed-memo")))  # 4 steps, no saves
    text = "\n".join(line for _, line in ran.lines)
    (state.CFG.out / "doctor.txt").write_text(text + "\n")
    stage["doctor"] = text.splitlines()
    if not state.CFG.local:  # the fake musubi-tuner has no GPU
        seen = any(line.startswith("ok    GPU") for line in stage["doctor"])
        checks.ok(seen, "doctor sees the GPU", text[-400:])


def main() -> int:
    driver.add({f"speed-{name}": state.Stage(stage_variant(name), COST_S) for name in VARIANTS})
    driver.add({"speed-report": state.Stage(stage_report, 0), "doctor": state.Stage(stage_doctor, 60)})
    return driver.main(__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
