"""The stage loop every driver shares: STAGES (what a stage runs, what it costs, whether a warm
machine still holds its outputs), the deadline, summary.json after every stage, and $OUT at the end.
A driver that adds stages registers them here (`add`) and calls `run_extension`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from harness import state
from harness.asserts import Checks
from harness.fake import write_fake_python
from harness.proc import gpu_count, gpu_monitor, gpu_processes
from harness.stages import cache, dry, infer, setup, train
from harness.state import HEIGHT, PACK_MARGIN, WIDTH, Config, Stage
from harness.timings import read_log, step_timings


def visible_gpus() -> set[str]:
    """The GPU indices this driver may use. nvidia-smi reports every GPU of the host whatever
    CUDA_VISIBLE_DEVICES says, so beside another lane (gpu_pair.sh) a stage's peak is taken over its
    own GPUs only (by index: the host's GPUs are alike, so CUDA's order and nvidia-smi's agree)."""
    named = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return {part.strip() for part in named.split(",") if part.strip().isdigit()}


def gpu_names() -> list[str]:
    """nvidia-smi's `name, memory, driver` per GPU, for the results files' `card`; [] without a GPU."""
    if not shutil.which("nvidia-smi"):
        return []
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    return subprocess.run(query, capture_output=True, text=True, check=False).stdout.splitlines()


def new_stage(name: str) -> dict[str, Any]:
    stage: dict[str, Any] = {
        "stage": name,
        "commands": [],
        "asserts": {"passed": [], "failed": []},
        "timings": {},
        "started_at_s": round(state.CFG.elapsed(), 1),
    }
    state.SUMMARY["stages"].append(stage)
    return stage


def finish(stage: dict[str, Any], t0: float) -> None:
    t1 = time.time()
    stage["wall_s"] = round(t1 - t0, 1)
    commands = stage["commands"]
    wrong = [c["rc"] for c in commands if c.get("rc") != c.get("expected_rc", 0)]
    stage["rc"] = wrong[0] if wrong else (0 if commands else None)
    if state.GPU:
        peaks = state.GPU.peaks(t0, t1)
        stage["peak_MiB_per_gpu"] = peaks
        mine = {k: v for k, v in peaks.items() if k in visible_gpus()} or peaks
        stage["peak_MiB"] = max(mine.values()) if mine else None
    with contextlib.suppress(OSError):
        stage["disk_free_GB"] = round(shutil.disk_usage(state.CFG.root).free / 1e9, 1)
    failed = stage["asserts"]["failed"]
    stage["asserts"]["n_passed"] = len(stage["asserts"]["passed"])
    stage["asserts"]["n_failed"] = len(failed)
    print(
        f"=== {stage['stage']} done: rc={stage['rc']} wall={stage['wall_s']}s peak={stage.get('peak_MiB')}MiB"
        f" asserts {len(stage['asserts']['passed'])} passed, {len(failed)} failed",
        flush=True,
    )
    save_summary()


STAGES: dict[str, Stage] = {
    **setup.STAGES,
    **cache.STAGES,
    **train.STAGES,
    **infer.STAGES,
    **dry.STAGES,
}


def add(stages: dict[str, Stage]) -> None:
    """A driver's own stages, beside (or instead of) the harness's of the same name."""
    STAGES.update(stages)


def cost(name: str) -> float:
    """Seconds the stage needs on an H100; nothing locally."""
    if state.CFG.local:
        return 0
    need = STAGES[name].cost
    return need() if callable(need) else need


def do_stage(spec: str) -> None:
    name = spec.rstrip("?")
    if name not in STAGES:
        raise SystemExit(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    if spec.endswith("?") and STAGES[name].done():
        print(f"=== {name}: outputs already on this machine, skipped", flush=True)
        state.SUMMARY["stages"].append({"stage": name, "rc": None, "skipped": "outputs already present"})
        save_summary()
        return
    need = cost(name)
    # a stage that costs nothing (a report of what the others measured) runs even past the deadline:
    # skipping it lost a call's results file on 2026-12-06 when the stage before ran to the deadline
    if need > 0 and state.CFG.left() - PACK_MARGIN < need:
        left = state.CFG.left() - PACK_MARGIN
        why = f"not started: needs ~{need:.0f} s, {left:.0f} s left before the deadline"
        print(f"=== {name}: SKIPPED ({why})", flush=True)
        state.SUMMARY["stages"].append({"stage": name, "rc": None, "skipped": why})
        save_summary()
        return
    stage = new_stage(name)
    stage["estimated_s"] = need
    stage["gpu_processes_before"] = gpu_processes()
    t0 = time.time()
    checks = Checks(stage)
    try:
        STAGES[name].run(stage, checks)
    except Exception as exc:  # a bug here must not lose the other stages' results
        checks.ok(False, f"stage {name} raised", f"{type(exc).__name__}: {exc}")
        import traceback

        traceback.print_exc()
    finish(stage, t0)


def save_summary() -> None:
    state.SUMMARY["elapsed_s"] = round(state.CFG.elapsed(), 1)
    stages = state.SUMMARY["stages"]
    state.SUMMARY["asserts_failed_total"] = sum(len(s.get("asserts", {}).get("failed", [])) for s in stages)
    state.SUMMARY["asserts_passed_total"] = sum(len(s.get("asserts", {}).get("passed", [])) for s in stages)
    text = json.dumps(state.SUMMARY, indent=1, default=str)
    for path in (state.CFG.root / "summary.json", state.CFG.out / "summary.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # gpu_pair.sh's lanes share the root
        tmp.write_text(text)
        tmp.replace(path)


def pack() -> None:
    """$OUT: logs.tgz (text), images.tgz (PNGs, capped), manifests; at most 8 files in all."""
    root = state.CFG.root
    with tarfile.open(state.CFG.out / "logs.tgz", "w:gz") as tar:
        for sub in ("logs", "summary.json"):
            if (root / sub).exists():
                tar.add(root / sub, arcname=sub)
        if state.CFG.configs.is_dir():
            for path in sorted(state.CFG.configs.rglob("*")):
                if path.is_file() and "cache" not in path.parts and path.suffix != ".png":
                    tar.add(path, arcname=str(path.relative_to(root)))
        if state.CFG.runs.is_dir():
            for path in sorted(state.CFG.runs.rglob("*")):
                wanted = path.suffix in (".log", ".json") or "logs" in path.parts
                if wanted and path.is_file() and path.stat().st_size < 8 << 20:
                    tar.add(path, arcname=str(path.relative_to(root)))
            listing = {
                str(p.relative_to(state.CFG.runs)): p.stat().st_size
                for p in sorted(state.CFG.runs.rglob("*"))
                if p.is_file()
            }
            (root / "runs-listing.json").write_text(json.dumps(listing, indent=1))
            tar.add(root / "runs-listing.json", arcname="runs-listing.json")
    budget = 14 << 20
    pngs = sorted((state.CFG.runs / "sample").rglob("*.png")) if (state.CFG.runs / "sample").is_dir() else []
    if pngs:
        with tarfile.open(state.CFG.out / "images.tgz", "w:gz") as tar:
            used = 0
            for png in pngs:
                size = png.stat().st_size
                if used + size > budget:
                    continue
                used += size
                tar.add(png, arcname=str(png.relative_to(state.CFG.runs)))
    for version in ("e2e", state.CFG.g_version, "timing"):
        path = state.CFG.runs / f"{state.CFG.output_name(version)}.fplora-run.json"
        if path.is_file():
            shutil.copy(path, state.CFG.out / f"manifest-{version}.json")
    sizes = {p.name: p.stat().st_size for p in state.CFG.out.iterdir() if p.is_file()}
    print(f"$OUT: {sizes}", flush=True)


def print_table() -> None:
    for s in state.SUMMARY["stages"]:
        a = s.get("asserts", {})
        t = s.get("timings") or {}
        extra = s.get("skipped") or ", ".join(
            f"{k}={t[k]}" for k in ("s_per_step", "samples_per_s", "dit_s_per_image") if k in t
        )
        passed, failed = len(a.get("passed", [])), len(a.get("failed", []))
        print(
            f"{s['stage']:>8}: rc={s.get('rc')} wall={s.get('wall_s')}s peak={s.get('peak_MiB')}MiB"
            f" asserts={passed}/{passed + failed} {extra}",
            flush=True,
        )
        for failure in a.get("failed", []):
            print(f"          FAILED: {failure}"[:300], flush=True)


def make_folders() -> None:
    for folder in (state.CFG.root, state.CFG.logs, state.CFG.marks, state.CFG.out):
        folder.mkdir(parents=True, exist_ok=True)


def run_stages(stages: list[str]) -> int:
    """Every driver's end: the stages in order, then always the summary and $OUT, even when one raised."""
    try:
        for spec in stages:
            do_stage(spec)
    finally:
        if state.GPU:
            state.GPU.stop()
        save_summary()
        pack()
    print_table()
    return 1 if state.SUMMARY.get("asserts_failed_total") else 0


def run_extension(
    doc: str,
    *,
    stages: dict[str, Stage],
    local_stages: list[str],
    local_root: str,
    local_records: int,
    harness_fake: bool = False,
) -> int:
    """The main of a driver that extends this harness with stages of its own (sweep_speed.py,
    eval_check.py): the same options, Config and stage loop; `--local-fake` runs `local_stages`
    against the tests' fake musubi Python (tests/fakes/fake_python), which runs the real worker files,
    or with `harness_fake` against gpu_e2e's (harness/fake.py), whose LoRAs and images are real files."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("stages", nargs="*")
    parser.add_argument("--deadline", type=float, default=None, help="seconds to be packed by (default 560)")
    parser.add_argument("--root", default=None, help="work folder (default /tmp/fpe2e, as gpu_e2e.py)")
    parser.add_argument("--models", default=None, help="model folder (default /tmp/models)")
    parser.add_argument("--out", default=None, help="results folder (default $OUT)")
    parser.add_argument("--local-fake", action="store_true", help="no GPU: every stage against the fakes")
    a = parser.parse_args()
    mode = "fake" if a.local_fake else None
    root = Path(a.root or (local_root if mode else "/tmp/fpe2e"))
    if mode and not a.stages:
        if root.exists() and a.root is None:
            shutil.rmtree(root)
        a.stages = list(local_stages)
    if not a.stages:
        parser.error("name the stages (see the docstring), or --local-fake")
    state.CFG = Config(
        root=root,
        models=Path(a.models or (root / "models" if mode else "/tmp/models")),
        out=Path(a.out or os.environ.get("OUT") or root / "out"),
        deadline=a.deadline or (3600 if mode else 560),
        gpus=1,
        gpus_seen=gpu_count(),
        e2e_batch=8,
        e2e_swap=0,
        timing_steps=5,
        train2_steps=4,
        records=local_records if mode else 32,
        local=mode,
    )
    make_folders()
    if mode and harness_fake:
        write_fake_python()
    elif mode:
        shim = state.CFG.root / "bin" / "fake-python"
        shim.parent.mkdir(parents=True, exist_ok=True)
        fake = state.REPO / "tests" / "fakes" / "fake_python"
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(fake))} "$@"\n')
        shim.chmod(0o755)
    state.GPU = None if mode else gpu_monitor()
    add(stages)
    state.SUMMARY.update(
        started=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        argv=sys.argv[1:],
        mode=mode or "gpu",
        gpu_names=gpu_names(),
    )
    return run_stages(a.stages)


def main(doc: str) -> int:
    """gpu_e2e.py's command line, also the main of a driver that adds stages to it (preset_speed.py)."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("stages", nargs="*", help="stages in order; STAGE? skips one whose outputs exist")
    parser.add_argument(
        "--deadline", type=float, default=None, help="seconds from start to be packed by (default 560)"
    )
    parser.add_argument("--out", default=None, help="results folder (default $OUT, else <root>/out)")
    parser.add_argument("--root", default=None, help="work folder (default /tmp/fpe2e)")
    parser.add_argument("--models", default=None, help="model folder (default /tmp/models)")
    parser.add_argument(
        "--gpus", type=int, default=None, help="processes for train2 (default: GPUs seen, min 2)"
    )
    parser.add_argument("--e2e-batch", type=int, default=8, help="batch size of e2e and train2 (default 8)")
    parser.add_argument(
        "--e2e-swap", type=int, default=0, help="blocks_to_swap of e2e and train2 (default 0)"
    )
    parser.add_argument("--timing-steps", type=int, default=5, help="steps of the timing run (default 5)")
    parser.add_argument("--train2-steps", type=int, default=4, help="steps of train2 (default 4)")
    parser.add_argument("--records", type=int, default=None, help="dataset records (default 32; local 6)")
    parser.add_argument(
        "--shape",
        default=f"{WIDTH}x{HEIGHT}",
        help="WIDTHxHEIGHT of the dataset and the specs' resolution (default 512x768, the memo's);"
        " give another shape its own --root: the data, caches and runs there are made at it",
    )
    parser.add_argument(
        "--controls", type=int, choices=(1, 2), default=2, help="control images per record (default 2)"
    )
    parser.add_argument(
        "--timings-from",
        metavar="LOG",
        help="print the step timings of a stage log or training log (batch --e2e-batch, processes"
        " --gpus or 1), and exit",
    )
    local = parser.add_mutually_exclusive_group()
    local.add_argument("--local-dry", action="store_true", help="no GPU: specs, check and dry runs")
    local.add_argument("--local-fake", action="store_true", help="no GPU: every stage, fake musubi-tuner")
    a = parser.parse_args()
    if a.timings_from:
        state.GPU = None
        found = step_timings(read_log(Path(a.timings_from)), a.e2e_batch, a.gpus or 1)
        print(json.dumps(found, indent=1))
        return 0 if found.get("s_per_step") else 1
    mode = "dry" if a.local_dry else "fake" if a.local_fake else None
    root = Path(a.root or ("/tmp/fpe2e-local" if mode else "/tmp/fpe2e"))
    if mode and not a.stages:
        a.stages = ["dry"] if mode == "dry" else [
            "install", "weights", "data", "check", "cache", "train", "resume", "infer", "train2", "timing",
            "recache",
        ]  # fmt: skip
        if root.exists() and a.root is None:
            shutil.rmtree(root)
    if mode == "dry":
        a.stages = ["install", "weights?", "data?", *a.stages]
    if not a.stages:
        parser.error("name at least one stage (or --local-dry / --local-fake)")
    try:
        width, height = (int(x) for x in a.shape.lower().split("x"))
    except ValueError:
        parser.error(f"--shape {a.shape}: give WIDTHxHEIGHT, e.g. 768x512")
    seen = gpu_count()
    state.CFG = Config(
        root=root,
        models=Path(a.models or (root / "models" if mode else "/tmp/models")),
        out=Path(a.out or os.environ.get("OUT") or root / "out"),
        deadline=a.deadline or (3600 if mode else 560),
        gpus=a.gpus or max(2, seen),
        gpus_seen=seen,
        e2e_batch=a.e2e_batch,
        e2e_swap=a.e2e_swap,
        timing_steps=a.timing_steps,
        train2_steps=a.train2_steps,
        records=a.records or (6 if mode else 32),
        local=mode,
        width=width,
        height=height,
        controls=a.controls,
    )
    make_folders()
    if mode:
        write_fake_python()
    state.GPU = None if mode else gpu_monitor()
    state.SUMMARY.update(
        started=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        argv=sys.argv[1:],
        mode=mode or "gpu",
        deadline_s=state.CFG.deadline,
        root=str(state.CFG.root),
        gpus_seen=seen,
        gpu_names=gpu_names(),
        settings={
            "e2e_batch": state.CFG.e2e_batch,
            "e2e_blocks_to_swap": state.CFG.e2e_swap,
            "train2_processes": state.CFG.gpus,
            "train2_steps": state.CFG.train2_steps,
            "timing_steps": state.CFG.timing_steps,
            "records": state.CFG.records,
            "shape": f"{state.CFG.width}x{state.CFG.height}",
            "controls": state.CFG.controls,
        },
    )
    return run_stages(a.stages)
