"""Training stages: the first run, its resume as a second segment, data-parallel training on several
GPUs, and the memo's settings for seconds per step."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import state
from harness.asserts import (
    Checks,
    check_lora,
    check_outputs,
    check_samples,
    check_segment,
    manifest,
    sha256_tree,
)
from harness.proc import fplora
from harness.specs import write_specs
from harness.state import FAKE_SAMPLE_S, FAKE_STEP_S, Stage
from harness.timings import guarded, step_timings


def stage_train(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    name = state.CFG.output_name("e2e")
    stale = [p for p in state.CFG.runs.glob(f"{name}*")] if state.CFG.runs.is_dir() else []
    if stale:  # an earlier attempt on this machine that did not finish: start over
        stage["removed_before"] = sorted(p.name for p in stale)
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        for png in (state.CFG.runs / "sample").glob(f"{name}_*.png"):
            png.unlink()
    ran = fplora(stage, "train", str(state.CFG.spec("e2e")), extra_env={"E2E_MAX_STEPS": "2"})
    checks.rc(ran, what="fplora train e2e.yaml (steps 1-2)")
    stage["timings"] = guarded(checks, step_timings, ran, state.CFG.e2e_batch)
    stage["timings"]["note"] = (
        "a sample and a LoRA+state save follow every step: s_per_step leaves them out,"
        " sample_and_save_s_after_step has them (the end-of-training saves come later and are in neither)"
    )
    if state.CFG.local == "fake":
        per = stage["timings"].get("s_per_step") or 0
        checks.ok(
            FAKE_STEP_S * 0.8 < per < FAKE_SAMPLE_S,
            f"s/step leaves out sampling and saving (fake: {FAKE_STEP_S} s steps, {FAKE_SAMPLE_S} s samples)",
            stage["timings"],
        )
    check_outputs(checks, name, range(1, 3), states=True, final=True)
    check_samples(checks, name, range(1, 3), at_first=True)
    man = manifest("e2e")
    checks.ok(man, f"manifest {name}.fplora-run.json")
    segs = (man or {}).get("segments") or []
    if checks.ok(len(segs) == 1, "manifest has 1 segment", len(segs)) and segs:
        check_segment(checks, segs[0], 0, 0, 2)
    checks.ok((state.CFG.runs / f"{name}.log").is_file(), f"training log {name}.log")
    tb = state.CFG.runs / "logs"
    checks.ok(tb.is_dir() and any(tb.iterdir()), "tensorboard logging_dir written")
    config = (
        (state.CFG.configs / "e2e" / "config.toml").read_text()
        if (state.CFG.configs / "e2e").is_dir()
        else ""
    )
    checks.ok("max_train_steps = 2" in config, "rendered config.toml has max_train_steps = 2")
    checks.ok('save_precision = "bf16"' in config, 'rendered config.toml has save_precision = "bf16"')
    if ran.rc == 0:
        again = fplora(stage, "train", str(state.CFG.spec("e2e")), extra_env={"E2E_MAX_STEPS": "2"}, expect=1)
        checks.rc(again, 1, "a second `fplora train` without --resume is refused")
        checks.ok("already holds run" in again.text, "refusal names the existing run", again.text[-300:])


def _first_run_files(name: str) -> list[Path]:
    runs = state.CFG.runs
    pattern = re.compile(rf"^{re.escape(name)}(-step\d{{8}})?(\.safetensors|-state)$")
    return sorted(p for p in runs.iterdir() if pattern.match(p.name)) if runs.is_dir() else []


def stage_resume(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    name = state.CFG.output_name("e2e")
    man_path = state.CFG.runs / f"{name}.fplora-run.json"
    man = manifest("e2e")
    if man and len(man.get("segments", [])) > 1:  # an earlier resume that failed: undo it
        stage["removed_before"] = [s["output_name"] for s in man["segments"][1:]]
        for seg in man["segments"][1:]:
            for path in state.CFG.runs.glob(f"{seg['output_name']}*"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            for png in (state.CFG.runs / "sample").glob(f"{seg['output_name']}_*.png"):
                png.unlink()
        man["segments"] = man["segments"][:1]
        man_path.write_text(json.dumps(man, indent=2) + "\n")
    t = time.time()
    before = sha256_tree(_first_run_files(name))
    stage["timings"]["sha256_s"] = round(time.time() - t, 1)
    checks.ok(before, "first-run files to compare", len(before))
    ran = fplora(
        stage, "train", str(state.CFG.spec("e2e")), "--resume", "latest", extra_env={"E2E_MAX_STEPS": "4"}
    )
    checks.rc(ran, what="fplora train e2e.yaml --resume latest (steps 3-4)")
    stage["timings"].update(guarded(checks, step_timings, ran, state.CFG.e2e_batch))
    checks.ok("resuming at global step 2" in ran.text, "fplora says it resumes at global step 2")
    seg_name = f"{name}-r1"
    check_outputs(checks, seg_name, range(1, 3), states=True, final=True)
    # fplora resumes from config-resume.toml, without sample_at_first: no e000000 sample again
    found = check_samples(checks, seg_name, range(1, 3), at_first=False)
    checks.ok(
        not any("_e000000_" in f for f in found), "resumed segment did not sample at first again", found
    )
    after = sha256_tree(_first_run_files(name))
    changed = sorted(k for k in before if before[k] != after.get(k))
    checks.ok(before and not changed, f"first-run files unchanged ({len(before)} files, sha256)", changed[:5])
    man = manifest("e2e")
    segs = (man or {}).get("segments") or []
    if checks.ok(len(segs) == 2, "manifest has 2 segments", len(segs)) and len(segs) == 2:
        check_segment(checks, segs[0], 0, 0, 2)
        check_segment(checks, segs[1], 1, 2, 2)
        seg = segs[1]
        checks.ok(
            seg.get("output_name") == seg_name, f"segment 1 is named {seg_name}", seg.get("output_name")
        )
        resumed = str(seg.get("resumed_from") or "")
        checks.ok(resumed.endswith(f"{name}-step00000002-state"), "resumed from the step-2 state", resumed)
        cmd = seg.get("command") or []
        checks.ok(
            "--resume" in cmd and cmd[cmd.index("--max_train_steps") + 1] == "2"
            if "--max_train_steps" in cmd
            else False,
            "resume command: --resume and --max_train_steps 2 (the remaining steps)",
            cmd[-8:],
        )
    if ran.rc == 0:
        again = fplora(
            stage,
            "train",
            str(state.CFG.spec("e2e")),
            "--resume",
            "latest",
            extra_env={"E2E_MAX_STEPS": "4"},
            expect=1,
        )
        checks.rc(again, 1, "resuming past max_train_steps is refused")
        checks.ok("max_train_steps" in again.text, "refusal names max_train_steps", again.text[-300:])


def _fresh_run(stage: dict[str, Any], version: str) -> None:
    name = state.CFG.output_name(version)
    stale = list(state.CFG.runs.glob(f"{name}*")) if state.CFG.runs.is_dir() else []
    pattern = re.compile(
        rf"^{re.escape(name)}(-r\d+)?(-step\d{{8}}|-\d{{6}})?(\.safetensors|-state|\.log|\.lock)$"
    )
    stale = [p for p in stale if pattern.match(p.name) or p.name == f"{name}.fplora-run.json"]
    if stale:
        stage["removed_before"] = sorted(p.name for p in stale)
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def stage_train2(stage: dict[str, Any], checks: Checks) -> None:
    if state.CFG.gpus_seen < state.CFG.gpus and not state.CFG.local:
        stage["skipped"] = f"needs {state.CFG.gpus} GPUs, this machine has {state.CFG.gpus_seen}"
        print(f"=== train2: SKIPPED ({stage['skipped']})", flush=True)
        return
    write_specs()
    version = state.CFG.g_version
    _fresh_run(stage, version)
    ran = fplora(stage, "train", str(state.CFG.spec(version)))
    checks.rc(ran, what=f"fplora train {version}.yaml ({state.CFG.gpus} processes)")
    stage["timings"] = guarded(checks, step_timings, ran, state.CFG.e2e_batch, state.CFG.gpus)
    stage["timings"]["batch_per_gpu"] = state.CFG.e2e_batch
    name = state.CFG.output_name(version)
    check_lora(checks, state.CFG.runs / f"{name}.safetensors")
    segs = (manifest(version) or {}).get("segments") or []
    if checks.ok(len(segs) == 1, f"{version} manifest has 1 segment", len(segs)) and segs:
        check_segment(checks, segs[0], 0, 0, state.CFG.train2_steps, processes=state.CFG.gpus)
        cmd = segs[0].get("command") or []
        checks.ok("--multi_gpu" in cmd, "launch has --multi_gpu", cmd[:12])
        i = cmd.index("--num_processes") if "--num_processes" in cmd else -1
        checks.ok(
            i >= 0 and cmd[i + 1] == str(state.CFG.gpus), f"launch has --num_processes {state.CFG.gpus}"
        )
    if state.GPU and ran.rc == 0:
        peaks = state.GPU.peaks(ran.t0, ran.t1)
        busy = [k for k, v in peaks.items() if v > 8000]
        checks.ok(len(busy) >= state.CFG.gpus, f"{state.CFG.gpus} GPUs used (> 8 GB each)", peaks)


def stage_timing(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    _fresh_run(stage, "timing")
    ran = fplora(stage, "train", str(state.CFG.spec("timing")))
    checks.rc(ran, what="fplora train timing.yaml (batch 16, blocks_to_swap 20)")
    stage["timings"] = guarded(checks, step_timings, ran, 16)
    stage["timings"]["settings"] = "batch 16, blocks_to_swap 20, gradient checkpointing, no samples, no saves"
    check_lora(checks, state.CFG.runs / f"{state.CFG.output_name('timing')}.safetensors")
    checks.ok(stage["timings"].get("s_per_step"), "s/step measured", stage["timings"].get("bar_elapsed_s"))


def _trained() -> bool:
    segs = (manifest("e2e") or {}).get("segments") or [{}]
    step2 = state.CFG.runs / f"{state.CFG.output_name('e2e')}-step00000002.safetensors"
    return segs[0].get("exit_code") == 0 and step2.is_file()


def _resumed() -> bool:
    segs = (manifest("e2e") or {}).get("segments") or []
    return len(segs) >= 2 and segs[-1].get("exit_code") == 0


def _ran(version: Callable[[], str]) -> Callable[[], bool]:
    def done() -> bool:
        segs = (manifest(version()) or {}).get("segments") or []
        return bool(segs) and segs[-1].get("exit_code") == 0

    return done


STAGES = {
    # ~131 s start-up with sample prompts + 2 x 11.6 s + samples and saves
    "train": Stage(stage_train, 210, _trained),
    "resume": Stage(stage_resume, 210, _resumed),
    "train2": Stage(
        stage_train2, lambda: 150 + 13 * max(0, state.CFG.train2_steps - 4), _ran(lambda: state.CFG.g_version)
    ),
    # 60 s + 26 s per step (24.7 s/step at batch 16, swap 20)
    "timing": Stage(stage_timing, lambda: 60 + 26 * state.CFG.timing_steps, _ran(lambda: "timing")),
}
