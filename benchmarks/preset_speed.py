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

Issue 21's measurement on one card, in three commands on a warm machine (docs/presets.md, "What is
left for a GPU session"): the house settings, `gpu: auto`, the compiled no-recomputation setting and
its neighbours, and two other shapes (768x512 with one control, 640x640), each part within 600 s:

    set -o pipefail; python3 benchmarks/preset_speed.py --deadline 560 --matrix h100 --part 1 \\
        2>&1 | tee $OUT/console.log

(then `--part 2` and `--part 3`; `--matrix h200` for the H200). `$OUT/preset_speed.json` then holds the
date, card, versions and every variant's resolved settings; `benchmarks/fold_speed.py` folds it into
`src/fplora/presets/measurements.json`.

Where a compiled step's time goes (issue 21's levers): `profile` trains the fastest measured setting
(`nosplit`: compiled, batch 1 x 16, no recomputation, no split_attn) for 4 steps with torch.profiler
around step 3, injected by benchmarks/profile_hook/ (musubi-tuner untouched), and writes
$OUT/profile-nosplit.json, $OUT/profile.txt and, under 10 MB, the gzipped chrome trace
(`profile-<variant>` profiles another variant; docs/presets.md says what each group points to):

    set -o pipefail; FPLORA_REHEARSE=0 python3 benchmarks/preset_speed.py --deadline 560 \
        install? weights? data? cache? profile 2>&1 | tee $OUT/console.log

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
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import asserts, driver, fake, proc, profile_table, provenance, specs, state, timings
from harness.stages import train

EFFECTIVE = 16  # the memo's batch, and the effective batch every variant keeps
STEPS = 3  # step 1 (warm-up) is never timed: two steady steps of 16 samples each

# the h200 preset's setting written out, for neighbours that pin one more setting (a preset given a
# pin it has no row for falls back to its model, which never compiles)
_COMPILED_B1 = (
    "data: {batch_size: 1}\ntrain:\n  gradient_accumulation_steps: 16\n  gradient_checkpointing: false\n"
    "  blocks_to_swap: 0\n  compile: true\n"
)
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
        "what `gpu: auto` chooses on this card for a fresh `fplora init` project, split_attn included"
        " (issue 21: twice the house settings on an H100 and an H200)",
        "gpu: auto\nwithout_preset: {split_attn: true}\ntrain:\n  split_attn: null\n",
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
    # issue 21's neighbours of the compiled no-recomputation setting (`--matrix`)
    "nosplit": (
        "the h200 preset without split_attn: batch 1 then crops the caption's padding (GPU matrix:"
        " 0.852 against 0.953 s, 80,776 against 85,757 MiB uncompiled on an H200)",
        "gpu: h200\ntrain:\n  split_attn: false\n",
    ),
    "fp8": (
        "the h200 preset with fp8 base weights (fp8_base + fp8_scaled)",
        _COMPILED_B1 + "  fp8_base: true\n  fp8_scaled: true\n",
    ),
    "b2-swap12c": (
        "batch 2 x 8, no recomputation, 12 swapped blocks, torch.compile (the H200's neighbour)",
        _COMPILED_B1.replace("batch_size: 1", "batch_size: 2")
        .replace("steps: 16", "steps: 8")
        .replace("blocks_to_swap: 0", "blocks_to_swap: 12"),
    ),
    "autotune": (
        "nosplit with compile_mode max-autotune-no-cudagraphs: inductor benchmarks GEMM and fused-kernel"
        " choices while compiling (issue 21's last untried compile lever; CUDA graphs stay off, the"
        " profile puts their ceiling at ~3 %)",
        "gpu: h200\ntrain:\n  split_attn: false\n"
        "musubi:\n  config: {compile_mode: max-autotune-no-cudagraphs}\n",
    ),
    "b1-swap6c": (
        "batch 1 x 16, no recomputation, 6 swapped blocks, torch.compile (the H100's neighbour: batch 2"
        " without recomputation is ~141 GB uncompiled, past any swap an H100 allows)",
        _COMPILED_B1.replace("blocks_to_swap: 0", "blocks_to_swap: 6"),
    ),
}
# musubi.config options a variant sets, which a preset does not: folded rows carry them (never chosen)
OPTIONS = {
    "b2-swap12": ["use_pinned_memory_for_block_swap"],
    "offload": ["gradient_checkpointing_cpu_offload"],
    "tf32": ["cuda_allow_tf32"],
    "flash": ["attention flash_attn"],
    "autotune": ["compile_mode max-autotune-no-cudagraphs"],
}
# other shapes (issue 21): width, height, control images; each its own data and cache
SHAPES = {"768x512c1": (768, 512, 1), "640x640c2": (640, 640, 2)}
SHAPE_VARIANTS = ("memo", "preset", "auto", "autotune")
# `--matrix CARD --part N`: every command's stages, each part within a 600 s call on a warm machine
# (each part sets a fresh machine up first: ~260 s; the parts already measured on 2026-12-06 on the
# H100, 1 and 2, do not repeat it). Results accumulate in <root>/speed.json;
# every part ends with speed-report, so each $OUT/preset_speed.json holds all parts so far.
_SETUP = ["install?", "weights?", "data?", "cache?"]
MATRIX = {
    "h100": [
        [*_SETUP, "speed-memo", "speed-preset", "speed-report"],
        ["speed-auto", "speed-nosplit", "speed-fp8", "speed-report"],
        [
            *_SETUP,
            "shapes-data?",
            "shapes-cache?",
            "speed-auto@768x512c1",
            "speed-auto@640x640c2",
            "speed-report",
        ],
        [*_SETUP, "profile", "speed-report"],
    ],
    "h200": [
        [*_SETUP, "speed-memo", "speed-auto", "speed-report"],
        [
            *_SETUP,
            "speed-nosplit",
            "shapes-data?",
            "shapes-cache?",
            "speed-auto@768x512c1",
            "speed-auto@640x640c2",
            "speed-report",
        ],
        [*_SETUP, "profile", "speed-tf32", "speed-report"],
    ],
}
COST_S = 100 + 20 * STEPS  # start-up to step 1 (83 s for the memo's settings on an H200) + ~17 s per step
# `profile-<variant>` (`profile`: nosplit, the fastest measured setting): torch.profiler around one
# steady optimizer step, injected by benchmarks/profile_hook/sitecustomize.py (musubi-tuner untouched).
# Step 3 of 4 is profiled: step 1 compiles, step 2 is the unprofiled reference, step 3's bar time also
# holds the profiler's export (made right after its optimizer step), step 4 is a second reference.
PROFILE_DEFAULT = "nosplit"
PROFILE_STEPS, PROFILE_AT = 4, 3
PROFILE_TRACE_MB = (
    10  # the gzipped chrome trace comes back only under this (the device returns <= 16 MiB a file)
)
PROFILE_HOOK = Path(__file__).resolve().parent / "profile_hook"
PROFILE_COST_S = 80 + 15 * PROFILE_STEPS + 90  # compiled: 75 s to step 1 on an H100, ~10 s/step; the export


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
        if name in SHAPE_VARIANTS:
            for shape in SHAPES:
                state.CFG.spec(f"speed-{name}-{shape}").write_text(_shaped(body, shape))


def _shape_data(shape: str) -> Path:
    return state.CFG.root / f"data-{shape}"


def _shaped(body: str, shape: str) -> str:
    """A variant's spec moved to another shape: its own data, cache and one-frame settings."""
    width, height, controls = SHAPES[shape]
    assert "\ndata:" not in body and "\ndatasets:" not in body and "\none_frame:" not in body, body
    indices = [0, 10][:controls] if controls <= 2 else [0, 2, 10]
    return body + (
        f"data:\n  resolution: [{width}, {height}]\n"
        f"datasets:\n  - jsonl: {_shape_data(shape) / 'metadata-v1.jsonl'}\n"
        f"    cache_directory: {state.CFG.root / 'cache' / shape}\n    num_repeats: 10\n"
        f"one_frame:\n  clean_indices: {indices}\n  target_index: 5\n  no_post: true\n"
    )


def stage_shapes_data(stage: dict[str, Any], checks: Any) -> None:
    """Synthetic records at each other shape (gpu_setup/make_dataset.py, as `data` makes the house's),
    with control images dropped down to the shape's count."""
    for shape, (width, height, controls) in SHAPES.items():
        root = _shape_data(shape)
        jsonl = root / "metadata-v1.jsonl"
        if state.CFG.local:
            lines = []
            for i in range(state.CFG.records):
                record = {"image_path": str(root / "images" / f"img{i:03d}.png")}
                fake.write_png(Path(record["image_path"]), width, height, (40 * i % 256, 90, 160))
                for c in range(2):
                    control = root / "control" / f"img{i:03d}_{c}.png"
                    fake.write_png(control, width, height, (90, 40 * i % 256, 60 * c))
                    record[f"control_path_{c}"] = str(control)
                record["caption"] = f"a synthetic test card number {i}, the character changes clothes"
                lines.append(json.dumps(record))
            root.mkdir(parents=True, exist_ok=True)
            jsonl.write_text("\n".join(lines) + "\n")
        else:
            argv = [sys.executable, str(state.SETUP / "make_dataset.py"), "--root", str(root)]
            argv += ["--n", str(state.CFG.records), "--width", str(width), "--height", str(height)]
            checks.rc(proc.run(stage, argv), what=f"make_dataset.py {shape}")
        records = [json.loads(x) for x in jsonl.read_text().splitlines() if x] if jsonl.is_file() else []
        for record in records:
            for c in range(controls, 2):
                record.pop(f"control_path_{c}", None)
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
        checks.ok(len(records) == state.CFG.records, f"{shape}: {state.CFG.records} records", len(records))
    (state.CFG.marks / "shapes-data.ok").write_text("ok\n")


def stage_shapes_cache(stage: dict[str, Any], checks: Any) -> None:
    write_specs()
    for shape in SHAPES:
        ran = proc.fplora(stage, "cache", str(state.CFG.spec(f"speed-memo-{shape}")))
        checks.rc(ran, what=f"fplora cache speed-memo-{shape}.yaml")
    if not checks.failed:
        (state.CFG.marks / "shapes-cache.ok").write_text("ok\n")


def _settings(version: str, name: str) -> dict[str, Any] | None:
    """The settings the run used, from the files fplora rendered for it (a preset's choice included)."""
    folder = state.CFG.configs / version
    try:
        config = tomllib.loads((folder / "config.toml").read_text())
        dataset = tomllib.loads((folder / "dataset.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    general = dataset.get("general", {})
    first = (dataset.get("datasets") or [{}])[0]
    width, height = first.get("resolution", general.get("resolution", [0, 0]))
    indices = first.get("fp_1f_clean_indices", general.get("fp_1f_clean_indices", []))
    return {
        "batch": int(first.get("batch_size", general.get("batch_size", 1))),
        "accumulation": int(config.get("gradient_accumulation_steps", 1)),
        "blocks_to_swap": int(config.get("blocks_to_swap", 0)),
        "gradient_checkpointing": bool(config.get("gradient_checkpointing", False)),
        "fp8": bool(config.get("fp8_base", False) and config.get("fp8_scaled", False)),
        "compile": bool(config.get("compile", False)),
        "split_attn": bool(config.get("split_attn", False)),
        "width": int(width),
        "height": int(height),
        "controls": len(indices),
        "options": OPTIONS.get(name.split("@")[0], []),
    }


def stage_variant(name: str) -> Any:
    variant, _, shape = name.partition("@")

    def run(stage: dict[str, Any], checks: Any) -> None:
        write_specs()
        version = f"speed-{variant}" + (f"-{shape}" if shape else "")
        if name == "flash" and not state.CFG.local:
            probe = proc.run(stage, [sys.executable, "-c", "import flash_attn"])
            if probe.rc != 0:
                stage["skipped"] = "flash_attn is not installed in the musubi-tuner Python"
                _record(name, {"skipped": stage["skipped"]})
                return
        train._fresh_run(stage, version)
        for rendered in ("config.toml", "dataset.toml"):  # the settings are read back from this run's
            (state.CFG.configs / version / rendered).unlink(missing_ok=True)
        for png in (state.CFG.runs / "sample").glob(f"{state.CFG.output_name(version)}_*.png"):
            png.unlink()  # samples of an earlier run of this stage: judge this run's own
        dry = proc.fplora(stage, "train", str(state.CFG.spec(version)), "--dry-run")
        stage["preset_lines"] = [text for _, text in dry.lines if text.startswith(("note: gpu", "estimate:"))]
        ran = proc.fplora(stage, "train", str(state.CFG.spec(version)))
        timing = timings.guarded(checks, timings.step_timings, ran, EFFECTIVE)
        stage["timings"] = timing
        s_step = timing.get("s_per_step")
        settings = _settings(version, name)
        each = timing.get("bar_elapsed_s") or {}
        entry = {
            "what": VARIANTS[variant][0] + (f", at {shape}" if shape else ""),
            "shape": f"{settings['width']}x{settings['height']}, {settings['controls']} control image(s)"
            if settings
            else f"{state.CFG.width}x{state.CFG.height}, {state.CFG.controls} control image(s)",
            "settings": settings,
            "s_per_micro_batch": round(s_step / settings["accumulation"], 4) if s_step and settings else None,
            "start_to_step1_s": timing.get("start_to_step1_s"),
            "bar_elapsed_s": each,
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
        if name in ("memo", "preset", "auto", "sampled"):
            checks.rc(ran, what=f"fplora train {version}.yaml")
            checks.ok(entry["samples_per_s"], f"{version}: samples/s measured", timing.get("bar_elapsed_s"))
        if name == "sampled":  # the compiled DiT also samples, under no_grad and at another shape
            asserts.check_samples(checks, state.CFG.output_name(version), range(1, STEPS + 1), at_first=False)
            stage["sample_s_after_step"] = timing.get("sample_and_save_s_after_step")

    return run


def stage_profile(variant: str) -> Any:
    """Train `variant` for PROFILE_STEPS steps with the profiler hook on PYTHONPATH, then write the
    table of step PROFILE_AT into $OUT: profile-<variant>.json (the table, the raw export it came from,
    the step times and settings), profile.txt (the tables of every variant profiled so far as text),
    and profile-<variant>-trace.json.gz when the gzipped chrome trace is under PROFILE_TRACE_MB."""

    def run(stage: dict[str, Any], checks: Any) -> None:
        write_specs()
        version = f"profile-{variant}"
        body = state.CFG.spec(f"speed-{variant}").read_text()
        steps = f"  max_train_steps: {STEPS}\n"
        assert steps in body, body
        body = body.replace(steps, f"  max_train_steps: {PROFILE_STEPS}\n")
        state.CFG.spec(version).write_text(f"# profiled: benchmarks/preset_speed.py {version}\n{body}")
        train._fresh_run(stage, version)
        for rendered in ("config.toml", "dataset.toml"):  # the settings are read back from this run's
            (state.CFG.configs / version / rendered).unlink(missing_ok=True)
        folder = state.CFG.root / version
        for old in folder.glob("*") if folder.is_dir() else []:
            old.unlink()
        base = proc.env()["PYTHONPATH"]
        extra = {
            "PYTHONPATH": f"{PROFILE_HOOK}:{base}",
            "FPLORA_PROFILE_OUT": str(folder),
            "FPLORA_PROFILE_STEP": str(PROFILE_AT),
            "FPLORA_PROFILE_TRACE": str(PROFILE_TRACE_MB),
        }
        ran = proc.fplora(stage, "train", str(state.CFG.spec(version)), extra_env=extra)
        checks.rc(ran, what=f"fplora train {version}.yaml with the profiler hook")
        timing = timings.guarded(checks, timings.step_timings, ran, EFFECTIVE)
        stage["timings"] = timing
        raw_path = folder / "profile-raw.json"
        checks.ok(raw_path.is_file(), f"{version}: the profiler hook wrote its export", ran.text[-600:])
        if not raw_path.is_file():
            return
        raw = json.loads(raw_path.read_text())
        table = profile_table.summarise(raw)
        each = timing.get("s_per_step_each") or {}
        clean = [v for k, v in each.items() if k != str(PROFILE_AT)]
        result = {
            "variant": variant,
            "what": VARIANTS[variant][0],
            "settings": _settings(version, variant),
            "profiled_step": PROFILE_AT,
            # the profiled step's own wall time against the unprofiled steps' (the profiler's overhead)
            "window_s": raw["window_s"],
            "unprofiled_s_per_step": round(sum(clean) / len(clean), 3) if clean else None,
            "s_per_step_each": each,
            "table": table,
            "raw": raw,
        }
        out = state.CFG.out
        (out / f"{version}.json").write_text(json.dumps(result, indent=1))
        text = profile_table.render(table)
        _profile_text(out)
        trace = folder / "trace.json.gz"
        if trace.is_file():
            trace.replace(out / f"{version}-trace.json.gz")
        print(text, flush=True)
        stage["profile"] = {
            "window_s": raw["window_s"],
            "unprofiled_s_per_step": result["unprofiled_s_per_step"],
            "groups_s": {name: g["s"] for name, g in table["groups"].items()},
            "gpu_busy_share": (table.get("gpu") or {}).get("busy_share"),
        }
        checks.ok(sum(g["count"] for g in table["groups"].values()) > 0, f"{version}: work in the table", raw)
        if not state.CFG.local:  # a GPU run profiles the kernels, not the CPU's ops
            checks.ok(table["basis"] == "device" and "gpu" in table, f"{version}: CUDA kernels profiled", raw)

    return run


def _profile_text(out: Path) -> None:
    """$OUT/profile.txt: every profiled variant's table in one file (the device returns 8 files)."""
    parts = []
    for path in sorted(out.glob("profile-*.json")):
        result = json.loads(path.read_text())
        head = f"== {path.stem}: {result['what']}\n"
        head += f"   unprofiled s/step {result['unprofiled_s_per_step']},"
        head += f" profiled window {result['window_s']} s\n"
        parts.append(head + profile_table.render(result["table"]))
    (out / "profile.txt").write_text("\n".join(parts))


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
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "card": provenance.card(),
        "versions": provenance.gpu_versions(),
        "command": " ".join(["benchmarks/preset_speed.py", *sys.argv[1:]]),
        "goals": {k: stage.get(k) for k in ("goal_1_3x", "goal_auto_2x", "auto_chose")},
        "variants": rows,
    }
    (state.CFG.out / "preset_speed.json").write_text(json.dumps(result, indent=1))


def stage_doctor(stage: dict[str, Any], checks: Any) -> None:
    write_specs()
    ran = proc.fplora(stage, "doctor", str(state.CFG.spec("speed-memo")))  # 4 steps, no saves
    text = "\n".join(line for _, line in ran.lines)
    (state.CFG.out / "doctor.txt").write_text(text + "\n")
    stage["doctor"] = text.splitlines()
    if not state.CFG.local:  # the fake musubi-tuner has no GPU
        seen = any(line.startswith("ok    GPU") for line in stage["doctor"])
        checks.ok(seen, "doctor sees the GPU", text[-400:])


def _matrix(argv: list[str]) -> list[str]:
    """`--matrix CARD --part N` replaced by that part's stages (`--matrix CARD` alone: all parts);
    `--matrix auto` takes the card nvidia-smi names (any but an H200 runs the H100's parts)."""
    if "--matrix" not in argv:
        return argv
    at = argv.index("--matrix")
    card = argv[at + 1]
    rest = argv[:at] + argv[at + 2 :]
    if card == "auto":  # the card the call got (a call may get an H100 or an H200)
        card = "h200" if any("H200" in name for name in driver.gpu_names()) else "h100"
        print(f"--matrix auto: {card}", flush=True)
    if card not in MATRIX:
        raise SystemExit(f"--matrix {card}: one of {', '.join(MATRIX)}")
    parts = MATRIX[card]
    if "--part" in rest:
        p = rest.index("--part")
        chosen = [parts[int(rest[p + 1]) - 1]]
        rest = rest[:p] + rest[p + 2 :]
    else:
        chosen = parts
    return rest + [stage for part in chosen for stage in part]


def _done(mark: str) -> Any:
    return lambda: (state.CFG.marks / mark).is_file()


def main() -> int:
    driver.add({f"speed-{name}": state.Stage(stage_variant(name), COST_S) for name in VARIANTS})
    shaped = {
        f"speed-{v}@{shape}": state.Stage(stage_variant(f"{v}@{shape}"), COST_S)
        for v in SHAPE_VARIANTS
        for shape in SHAPES
    }
    driver.add(shaped)
    driver.add({f"profile-{name}": state.Stage(stage_profile(name), PROFILE_COST_S) for name in VARIANTS})
    driver.add({"profile": state.Stage(stage_profile(PROFILE_DEFAULT), PROFILE_COST_S)})
    driver.add(
        {
            "speed-report": state.Stage(stage_report, 0),
            "doctor": state.Stage(stage_doctor, 60),
            "shapes-data": state.Stage(stage_shapes_data, 30, _done("shapes-data.ok")),
            "shapes-cache": state.Stage(stage_shapes_cache, 150, _done("shapes-cache.ok")),
        }
    )
    sys.argv[1:] = _matrix(sys.argv[1:])
    return driver.main(__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
