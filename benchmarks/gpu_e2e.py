#!/usr/bin/env python3
"""End-to-end test of fplora on a GPU machine: every stage goes through fplora's own CLI
(`python3 -m fplora check|cache|train|infer`), which drives the real musubi-tuner underneath.

Run on the GPU machine from the repo root (stdlib only; a copy of the repo that carries
.whl .whl2 .musubi .hf .gpu-e2e .whl3):

    python3 benchmarks/gpu_e2e.py --deadline 560 install weights? data? check? cache? train? ...

A stage written `STAGE?` is skipped when its outputs are already on the machine, so several 600-s
commands can continue on a warm machine (and a fresh machine rebuilds what a later stage needs).
A stage that cannot finish before --deadline (estimated from COST) is not started; one still running
at the deadline is stopped with everything it started. A failed stage does not stop later ones.

Stages:
  install  .gpu-e2e/install.sh (musubi-tuner's wheels -> /tmp/site, its source -> /tmp/musubi/src),
           then .whl3 (fplora's own deps: pydantic, ruamel.yaml, tomli-w, ...) -> /tmp/site
  weights  .gpu-e2e/make_weights.py: random full-size models in /tmp/models (memo layout)
  data     .gpu-e2e/make_dataset.py: 32 records (512x768 target + control_path_0/1 + caption)
  check    fplora check on every spec, with the model files
  cache    fplora cache (latents one-frame + text encoder), shared cache folder
  train    fplora train e2e.yaml: steps 1-2 (E2E_MAX_STEPS=2), LoRA + state every step, samples
           at first and every step; then a second `fplora train` must refuse the existing run
  resume   fplora train e2e.yaml --resume latest with E2E_MAX_STEPS=4: steps 3-4 as segment -r1;
           first-run files must be untouched; then a further resume must refuse (max steps reached)
  infer    fplora infer e2e.yaml --lora step3 --multiplier 1.0 --multiplier 1.2 (latest if no resume)
  train2   fplora train g<N>.yaml: launch.num_processes = --gpus (DDP), samples/s
  timing   fplora train timing.yaml: the memo's batch 16 / blocks_to_swap 20, s/step
  recache  edits the dataset after caching (a caption, an image, a removed record): train must refuse,
           fplora cache must recompute exactly those files; then a caption-only edit runs only the
           text-encoder script. Changes the dataset for good: run it last

Specs are written to <root>/configs/{base,e2e,g<N>,timing}.yaml (root /tmp/fpe2e); outputs go to
<root>/runs. $OUT (or --out) gets summary.json after every stage, and at the end logs.tgz (stage
logs, rendered configs, fplora logs, nvidia-smi samples), images.tgz (sample/inference PNGs, capped)
and each run's manifest.

Without a GPU:
  --local-dry   writes the specs under /tmp/fpe2e-local with stand-in model files and a tiny
                dataset, runs `fplora check` (--skip-models and full) and the --dry-run commands,
                and checks what they render (stage `dry`).
  --local-fake  the real stage list against a fake musubi-tuner (this script, standing in for
                FPLORA_MUSUBI_PYTHON) that writes files named like musubi-tuner's: tests the stages,
                fplora's run bookkeeping and every assert here, in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GPU_E2E = REPO / ".gpu-e2e"
WHL3 = REPO / ".whl3"
SRC = REPO / "src"  # fplora's source; benchmarks/gpu_matrix.py points it at a committed snapshot
PROJECT = "fpe2e"
WIDTH, HEIGHT = 512, 768
NETWORK_DIM = 32
INFER_PROMPTS = 2
MODEL_FILES = (
    *(
        f"diffusion_models/FramePackI2V_HY/diffusion_pytorch_model-{k:05d}-of-00003.safetensors"
        for k in (1, 2, 3)
    ),
    "vae/diffusion_pytorch_model.safetensors",
    *(f"text_encoder/model-{k:05d}-of-00004.safetensors" for k in (1, 2, 3, 4)),
    "text_encoder_2/model.safetensors",
    "image_encoder/model.safetensors",
)

# Seconds a stage takes on an H100 (.gpu-e2e/README.md's measurements plus fplora's own start-up of a
# few seconds per command). A stage is not started when fewer seconds than this are left.
COST = {
    "install": 15,
    "weights": 95,
    "data": 10,
    "check": 15,
    "cache": 105,
    "train": 210,  # ~131 s start-up with sample prompts + 2 x 11.6 s + samples and saves
    "resume": 210,
    "infer": 240,  # 2 multipliers = 2 generate processes, each ~72 s start-up + 2 images
    "train2": 150,
    "timing": 60,  # + 26 s per step (24.7 s/step at batch 16, swap 20)
    "recache": 230,  # both cache scripts (~118 s), then the text-encoder one alone (~85 s)
    "dry": 0,
}
FAKE_STEP_S, FAKE_SAMPLE_S = 0.05, 0.15  # --local-fake: seconds per training step and per sample
PACK_MARGIN = 15  # seconds kept for packing $OUT after the last stage


@dataclass
class Config:
    root: Path
    models: Path
    out: Path
    deadline: float
    gpus: int
    gpus_seen: int
    e2e_batch: int
    e2e_swap: int
    timing_steps: int
    train2_steps: int
    records: int
    local: str | None  # None (GPU), "dry" or "fake"
    t0: float = field(default_factory=time.time)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def jsonl(self) -> Path:
        return self.data / "metadata-v1.jsonl"

    @property
    def cache(self) -> Path:
        return self.root / "cache" / "v1"

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def marks(self) -> Path:
        return self.root / "marks"

    @property
    def g_version(self) -> str:
        return f"g{self.gpus}"

    def spec(self, version: str) -> Path:
        return self.configs / f"{version}.yaml"

    def output_name(self, version: str) -> str:
        return f"{PROJECT}-{version}"

    def elapsed(self) -> float:
        return time.time() - self.t0

    def left(self) -> float:
        return self.deadline - self.elapsed()


CFG: Config
SUMMARY: dict[str, Any] = {"stages": []}


# ------------------------------------------------------------------------------------------ environment
def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What e2e.py sets for musubi-tuner processes, plus fplora's source and its musubi Python."""
    e = dict(os.environ)
    paths = [str(SRC)] if CFG.local else ["/tmp/site", "/tmp/musubi/src", str(SRC)]
    if e.get("PYTHONPATH"):
        paths.append(e["PYTHONPATH"])
    e["PYTHONPATH"] = ":".join(paths)
    e.update(
        HF_HOME=str(CFG.root / "hf-home"),
        HF_HUB_CACHE=str(REPO / ".hf" / "hub"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
        TOKENIZERS_PARALLELISM="false",
        NCCL_NVLS_ENABLE="0",
        TORCH_SYMM_MEM_DISABLE_MULTICAST="1",
        NVSHMEM_DISABLE_NVLS="1",
        FPLORA_MUSUBI_PYTHON=str(CFG.root / "bin" / "fake-python") if CFG.local else "python3",
    )
    e.update(extra or {})
    return e


# ------------------------------------------------------------------------------------------ GPU memory
class GpuMon:
    """nvidia-smi every 250 ms in the background: (time, gpu index, MiB used)."""

    def __init__(self, path: Path):
        self.samples: list[tuple[float, int, int]] = []
        self.proc: subprocess.Popen[str] | None = None
        if shutil.which("nvidia-smi") is None:
            return
        self.file = path.open("a")
        query = "--query-gpu=index,memory.used"
        self.proc = subprocess.Popen(
            ["nvidia-smi", query, "--format=csv,noheader,nounits", "-lms", "250"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                index, mem = (int(x) for x in line.split(",")[:2])
            except ValueError:
                continue
            t = time.time()
            self.samples.append((t, index, mem))
            self.file.write(f"{t:.2f},{index},{mem}\n")
            self.file.flush()

    def peaks(self, t0: float, t1: float) -> dict[str, int]:
        out: dict[str, int] = {}
        for t, index, mem in list(self.samples):
            if t0 <= t <= t1:
                out[str(index)] = max(out.get(str(index), 0), mem)
        return out

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait()


GPU: GpuMon | None = None


def gpu_count() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return sum(1 for line in done.stdout.splitlines() if line.startswith("GPU "))


def gpu_processes() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"]
    done = subprocess.run(query, capture_output=True, text=True, check=False)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ processes
def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """fplora runs musubi-tuner in a new session of its own: signal fplora (it forwards and waits),
    then kill every process it started, which a plain killpg of fplora's group would miss."""
    pids = _descendants(proc.pid)
    for _ in range(3):  # fplora's third signal kills its child's group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=8)
            break
        except subprocess.TimeoutExpired:
            pids += _descendants(proc.pid)
    for pid in {proc.pid, *pids, *_descendants(proc.pid)}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Ran:
    argv: list[str]
    rc: int | None
    t0: float
    t1: float
    lines: list[tuple[float, str]]
    log: Path
    killed: bool = False

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


PROGRESS = re.compile(
    r"^(?P<desc>[^|]*?):?\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<tot>\d+)(?:\s*\[(?P<post>[^\]]*)\])?"
)


def run(
    stage: dict[str, Any],
    argv: list[str],
    *,
    extra_env: dict[str, str] | None = None,
    expect: int = 0,
    cwd: Path | None = None,
    started: Callable[[int], None] | None = None,
) -> Ran:
    """Run one command (argv, no shell), timestamp every \\r- or \\n-ended line into a log, echo the
    \\n lines that are not progress bars, and stop it at the deadline. `started` gets the pid."""
    index = len(stage["commands"])
    log = CFG.logs / f"{stage['stage']}-{index}.log"
    cmd = shlex.join(argv)
    shown_env = {k: v for k, v in (extra_env or {}).items()}
    record: dict[str, Any] = {"cmd": cmd, "env": shown_env, "log": log.name, "expected_rc": expect}
    stage["commands"].append(record)
    timeout = CFG.left() - PACK_MARGIN
    print(f"=== {stage['stage']}: {cmd}", flush=True)
    t0 = time.time()
    lines: list[tuple[float, str]] = []
    stopped: list[bool] = []
    with log.open("w") as handle:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env(extra_env),
            cwd=cwd or CFG.root,
            start_new_session=True,
        )
        if started is not None:
            started(proc.pid)

        def stop() -> None:
            stopped.append(True)
            print(f"=== {stage['stage']}: deadline reached, stopping it", flush=True)
            _stop_tree(proc)

        stopper = threading.Timer(max(timeout, 1), stop)
        stopper.start()
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buf = b""
        while True:
            chunk = os.read(fd, 65536)
            now = time.time()
            if not chunk:
                break
            buf += chunk
            parts = re.split(rb"(\r|\n)", buf)
            buf = parts.pop()
            for i in range(0, len(parts), 2):
                text = parts[i].decode("utf-8", "replace")
                if not text.strip():
                    continue
                lines.append((now, text))
                handle.write(f"{now - t0:9.3f} {text}\n")
                if parts[i + 1] == b"\n" and not PROGRESS.search(text):
                    print(f"[{stage['stage']} {now - t0:6.1f}] {text}"[:400], flush=True)
        if buf.strip():
            lines.append((time.time(), buf.decode("utf-8", "replace")))
            handle.write(f"{time.time() - t0:9.3f} {lines[-1][1]}\n")
        rc = proc.wait()
        stopper.cancel()
    t1 = time.time()
    killed = bool(stopped)
    record.update(rc=rc, wall_s=round(t1 - t0, 1), killed_at_deadline=killed)
    print(f"=== {stage['stage']}: rc={rc} wall={t1 - t0:.1f}s", flush=True)
    return Ran(argv, rc, t0, t1, lines, log, killed)


def fplora(
    stage: dict[str, Any], *args: str, extra_env: dict[str, str] | None = None, expect: int = 0
) -> Ran:
    """`python3 -m fplora ARGS`, from the work folder (so `.fplora/last-spec` lands there)."""
    return run(stage, [sys.executable, "-m", "fplora", *args], extra_env=extra_env, expect=expect)


# ------------------------------------------------------------------------------------------ asserts
class Checks:
    """Collects pass/fail per stage; never raises."""

    def __init__(self, stage: dict[str, Any]):
        self.passed: list[str] = stage["asserts"]["passed"]
        self.failed: list[str] = stage["asserts"]["failed"]

    def ok(self, cond: Any, what: str, detail: Any = "") -> bool:
        if cond:
            self.passed.append(what)
        else:
            self.failed.append(f"{what}{': ' + str(detail) if detail != '' else ''}")
            print(f"    ASSERT FAILED: {self.failed[-1]}"[:600], flush=True)
        return bool(cond)

    def rc(self, ran: Ran, expected: int = 0, what: str = "") -> bool:
        label = what or shlex.join(ran.argv[2:5])
        tail = [line for _, line in ran.lines if not PROGRESS.search(line)][-3:]
        return self.ok(ran.rc == expected, f"exit {expected}: {label}", f"exit {ran.rc}; {tail}")


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file: 8-byte little-endian length, then JSON."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > 100 << 20:
            raise ValueError(f"header length {length}")
        return json.loads(handle.read(length))


def check_lora(checks: Checks, path: Path, dim: int = NETWORK_DIM, dtype: str = "BF16") -> None:
    name = path.name
    if not checks.ok(path.is_file() and path.stat().st_size > 0, f"LoRA file {name}"):
        return
    try:
        header = safetensors_header(path)
    except (OSError, ValueError, struct.error) as exc:
        checks.ok(False, f"{name}: safetensors header parses", exc)
        return
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    downs = {k: v for k, v in tensors.items() if "lora_down" in k}
    ups = {k: v for k, v in tensors.items() if "lora_up" in k}
    checks.ok(downs and ups and len(downs) == len(ups), f"{name}: lora_down/lora_up pairs", len(tensors))
    bad_rank = [k for k, v in downs.items() if v["shape"][0] != dim]
    bad_rank += [k for k, v in ups.items() if v["shape"][-1] != dim]
    checks.ok(not bad_rank, f"{name}: rank {dim} in every lora_down/lora_up", bad_rank[:3])
    dtypes = sorted({v["dtype"] for v in (*downs.values(), *ups.values())})
    checks.ok(dtypes == [dtype], f"{name}: weights are {dtype} (save_precision)", dtypes)


def png_size(path: Path) -> tuple[int, int] | None:
    with path.open("rb") as handle:
        head = handle.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def sha256_tree(paths: list[Path]) -> dict[str, str]:
    out = {}
    for base in paths:
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for file in files:
            digest = hashlib.sha256()
            with file.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 22), b""):
                    digest.update(block)
            out[str(file.relative_to(CFG.runs))] = digest.hexdigest()
    return out


def manifest(version: str) -> dict[str, Any] | None:
    path = CFG.runs / f"{CFG.output_name(version)}.fplora-run.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_outputs(checks: Checks, name: str, steps: range, *, states: bool, final: bool) -> None:
    runs = CFG.runs
    for step in steps:
        check_lora(checks, runs / f"{name}-step{step:08d}.safetensors")
        if states:
            state = runs / f"{name}-step{step:08d}-state"
            checks.ok(state.is_dir() and any(state.iterdir()), f"state folder {state.name}")
    if final:
        check_lora(checks, runs / f"{name}.safetensors")
        state = runs / f"{name}-state"
        if states:
            checks.ok(state.is_dir() and any(state.iterdir()), f"final state folder {state.name}")


def check_samples(checks: Checks, name: str, steps: range, at_first: bool) -> list[str]:
    sample = CFG.runs / "sample"
    found = sorted(p.name for p in sample.glob(f"{name}_*.png")) if sample.is_dir() else []
    wanted = (["e000000"] if at_first else []) + [f"{s:06d}" for s in steps]
    for tag in wanted:
        hits = [f for f in found if f.startswith(f"{name}_{tag}_")]
        checks.ok(hits, f"training sample {name}_{tag}_*.png", found[:8])
        for hit in hits[:1]:
            size = png_size(sample / hit)
            checks.ok(size == (WIDTH, HEIGHT), f"{hit} is a {WIDTH}x{HEIGHT} PNG", size)
    return found


def check_segment(
    checks: Checks, seg: dict[str, Any], index: int, offset: int, steps: int, processes: int = 1
) -> None:
    label = f"manifest segment {index}"
    checks.ok(seg.get("step_offset") == offset, f"{label}: step_offset {offset}", seg.get("step_offset"))
    checks.ok(seg.get("exit_code") == 0, f"{label}: exit_code 0", seg.get("exit_code"))
    checks.ok(seg.get("last_step") == steps, f"{label}: last_step {steps}", seg.get("last_step"))
    losses = seg.get("losses") or []
    finite = all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses)
    checks.ok(losses and finite, f"{label}: losses parsed and finite", losses)
    checks.ok(seg.get("num_processes") == processes, f"{label}: num_processes {processes}")


# ------------------------------------------------------------------------------------------ timings
BAR_ELAPSED = re.compile(r"^\s*(?:(\d+):)?(\d+):(\d+)")
BAR_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(s/it|it/s)")


@dataclass
class Render:
    """One redraw of a tqdm bar."""

    n: int
    elapsed: float  # seconds on the bar's own clock, as tqdm computed them when it drew this
    arrived: float  # seconds from process start to when the line reached us (may be late)


def bar_renders(ran: Ran, desc: str = "steps") -> list[Render]:
    """Every redraw of the bar `desc`, in order.

    The arrival time of a `\\r`-ended redraw is not when it was drawn: on the GPU machine the redraws
    reached us only with the next `\\n`-ended line (train, 2 GPUs: steps 1 and 2 "arrived" in the same
    read, 25 s after step 1). So the time is read from the bar itself. musubi-tuner's bar has
    smoothing=0, so its rate is n / elapsed (s/it or it/s, two decimals): elapsed = n x rate is good to
    n x 5 ms, where the mm:ss field is good to 1 s (used only where there is no rate: n = 0)."""
    out: list[Render] = []
    for t, text in ran.lines:
        match = PROGRESS.search(text)
        if not match or match["desc"].strip() != desc or match["post"] is None:
            continue
        n, post = int(match["n"]), match["post"]
        rate = BAR_RATE.search(post)
        clock = BAR_ELAPSED.match(post)
        elapsed: float | None = None
        if n > 0 and rate and float(rate[1]) > 0:
            value = float(rate[1])
            elapsed = n * value if rate[2] == "s/it" else n / value
        elif clock:
            elapsed = int(clock[1] or 0) * 3600 + int(clock[2]) * 60 + int(clock[3])
        if elapsed is not None:
            out.append(Render(n, elapsed, t - ran.t0))
    return out


def mark(ran: Ran, pattern: str, last: bool = False) -> float | None:
    """Seconds from process start to the first (or last) line matching `pattern`."""
    found = [t for t, text in ran.lines if re.search(pattern, text)]
    if not found:
        return None
    return round((found[-1] if last else found[0]) - ran.t0, 3)


def step_timings(ran: Ran, batch: int, processes: int = 1) -> dict[str, Any]:
    """Seconds per optimizer step, from musubi-tuner's `steps` bar; never raises on odd output.

    musubi-tuner resets the bar when step 1 is done (so its clock starts at the end of step 1), then
    per step k: `update(1)` draws k (if 0.1 s have passed since the last draw), then the sample and the
    LoRA/state saves of step k run, then `set_postfix` draws k again (always). With gradient
    accumulation `set_postfix` also draws after every micro-batch, so k is drawn again by each of step
    k+1's micro-batches but the last. The end of step k's sampling and saving is therefore k's second
    draw (its first for step 1, whose update draw falls within 0.1 s of the reset and is not drawn), and
    step k's own compute time is [first draw of k] - [that draw of k-1]; the sampling and saving between
    k's first and second draw is reported apart. A step counts only if k was drawn at least twice (the
    update draw and the postfix draw): with a single draw, the one seen may be the postfix's, after
    sampling and saving, so that interval is left out (listed in `excluded_steps`). Step 1 (from the
    bar's creation, with start-up and sample-at-first) is never counted. No steady step -> no s/step.
    (The first version took k-1's last draw, which with accumulation is one micro-batch before k: on
    the H200 it read 1.03 s for a 15.3-s step of 16 micro-batches.)"""
    out: dict[str, Any] = {}
    renders = [r for r in bar_renders(ran) if r.n >= 1]  # n = 0 draws are on the pre-reset clock
    by_n: dict[int, list[Render]] = {}
    for r in renders:
        by_n.setdefault(r.n, []).append(r)
    out["bar_elapsed_s"] = {str(n): [round(x.elapsed, 2) for x in rs] for n, rs in sorted(by_n.items())}
    if not by_n:
        return {**out, **_tqdm_and_load(ran)}
    # the bar's clock on ours: a draw arrives no earlier than it was drawn, so the earliest
    # (arrival - elapsed) is the reset, i.e. the end of step 1
    zero = min(r.arrived - r.elapsed for r in renders)
    if zero >= 0:  # a raw log has no arrival times
        out["start_to_step1_s"] = round(zero, 3)
    steady: dict[int, float] = {}
    excluded: list[int] = []
    between: dict[str, float] = {}
    for k in sorted(by_n):
        draws = by_n[k]
        if len(draws) >= 2 and k >= 2:
            between[str(k)] = round(draws[1].elapsed - draws[0].elapsed, 2)
        if k < 2:
            continue
        if k - 1 not in by_n or len(draws) < 2:
            excluded.append(k)
            continue
        d = draws[0].elapsed - _saved(by_n, k - 1).elapsed
        if d > 0:
            steady[k] = d
        else:
            excluded.append(k)
    out["sample_and_save_s_after_step"] = between
    if excluded:
        out["excluded_steps"] = excluded
    if steady:
        per = sum(steady.values()) / len(steady)
        out["s_per_step"] = round(per, 3)
        out["s_per_step_each"] = {str(k): round(v, 2) for k, v in steady.items()}
        out["s_per_step_steps"] = f"{','.join(map(str, steady))} (step 1 excluded)"
        out["samples_per_s"] = round(batch * processes / per, 3)
        if GPU:
            peaks: dict[str, int] = {}
            for k in steady:
                t0 = ran.t0 + zero + _saved(by_n, k - 1).elapsed
                t1 = ran.t0 + zero + by_n[k][0].elapsed
                for gpu, mib in GPU.peaks(t0, t1).items():
                    peaks[gpu] = max(peaks.get(gpu, 0), mib)
            out["gpu_peak_MiB_in_steps"] = peaks
    else:
        out["s_per_step"] = None
    return {**out, **_tqdm_and_load(ran)}


def _saved(by_n: dict[int, list[Render]], k: int) -> Render:
    """The draw of step k that follows its sampling and saving: the postfix draw, which is k's first
    for step 1 (drawn right after the reset, so its update draw is skipped) and its second after that."""
    draws = by_n[k]
    return draws[0] if k == 1 or len(draws) < 2 else draws[1]


def read_log(path: Path) -> Ran:
    """A Ran from a stage log (`logs/<stage>-<n>.log`: seconds from start, then the line) or from a raw
    log (fplora's `<output_name>.log`: no times, `\\r` and `\\n` lines), for `--timings-from`."""
    stamped = re.compile(r"^\s*(\d+\.\d{3}) (.*)$")
    lines: list[tuple[float, str]] = []
    for text in re.split(r"[\r\n]", path.read_text(errors="replace")):
        match = stamped.match(text)
        if match:
            lines.append((float(match[1]), match[2]))
        elif text.strip():
            lines.append((0.0, text))
    end = max((t for t, _ in lines), default=0.0)
    return Ran([], None, 0.0, end, lines, path)


def _tqdm_and_load(ran: Ran) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rates = re.findall(r"(\d+(?:\.\d+)?)(s/it|it/s)", " ".join(t for _, t in ran.lines if "steps:" in t))
    if rates:
        value, unit = float(rates[-1][0]), rates[-1][1]
        if value > 0:  # tqdm's own average since step 1: sampling, saving and the end included
            out["tqdm_last_s_per_it"] = round(value if unit == "s/it" else 1 / value, 3)
    load0, load1 = mark(ran, r"Loading DiT model from"), mark(ran, r"Loaded DiT model from")
    if load0 is not None and load1 is not None and ran.t1 > ran.t0:  # a raw log has no times
        out["dit_load_s"] = round(load1 - load0, 3)
    return out


ITER_BAR = re.compile(r"^(?P<n>\d+)it \[[\d:]+, *(?P<rate>\d+(?:\.\d+)?)(?P<unit>s/it|it/s)")


def iter_bar_s(ran: Ran, t_from: float, t_to: float) -> tuple[int, float] | None:
    """The last redraw of a bar without a total (`4it [00:10,  2.56s/it]`, the caching scripts') drawn
    between two times from process start: (iterations, seconds = n x rate, as tqdm measured them)."""
    found = None
    for t, text in ran.lines:
        match = ITER_BAR.match(text.lstrip())
        if match and t_from <= t - ran.t0 <= t_to and float(match["rate"]) > 0:
            n, rate = int(match["n"]), float(match["rate"])
            found = (n, round(n * rate if match["unit"] == "s/it" else n / rate, 3))
    return found


def cache_timings(ran: Ran, records: int) -> dict[str, Any]:
    """The latent script, then the text-encoder script. Encoding times come from their own bars (one
    iteration = one dataset batch); the rest from the log lines' arrival."""
    out: dict[str, Any] = {"wall_s_per_record": round((ran.t1 - ran.t0) / records, 3)}
    end = round(ran.t1 - ran.t0, 3)
    vae0 = mark(ran, r"Loading VAE model from")
    latent0 = mark(ran, r"Encoding dataset \[0\]")
    te_start = mark(ran, r"Load dataset config from", last=True)
    te0 = mark(ran, r"Encoding with Text Encoders")
    out["start_to_latent_encoding_s"] = latent0
    if vae0 is not None and latent0 is not None:
        out["latent_models_load_s"] = round(latent0 - vae0, 3)
    if latent0 is not None:
        bar = iter_bar_s(ran, latent0, te_start if te_start and te_start > latent0 else end)
        if bar:
            out["latent_encode_s"] = bar[1]
            out["latent_s_per_image"] = round(bar[1] / records, 3)
    if te_start is not None and te0 is not None:
        out["te_models_load_s"] = round(te0 - te_start, 3)
    if te0 is not None:
        bar = iter_bar_s(ran, te0, end)
        if bar:
            out["te_encode_s"] = bar[1]
            out["te_s_per_record"] = round(bar[1] / records, 3)
    return out


def infer_timings(ran: Ran, prompts: int) -> dict[str, Any]:
    """Per generate process (one per multiplier): start-up, then DiT time per image."""
    starts = [t for t, text in ran.lines if "Loading VAE and Image Encoders for batch" in text]
    gen = [t for t, text in ran.lines if "Generating latents for all prompts" in text]
    rel = [t for t, text in ran.lines if "Releasing DiT model from memory" in text]
    loads = [t for t, text in ran.lines if "Loading DiT model for batch generation" in text]
    out: dict[str, Any] = {"processes": len(gen)}
    if gen and rel and len(gen) == len(rel):
        out["dit_s_per_image"] = [round((r - g) / prompts, 3) for g, r in zip(gen, rel, strict=True)]
    if loads and gen and len(loads) == len(gen):
        out["dit_load_s"] = [round(g - s, 3) for s, g in zip(loads, gen, strict=True)]
    if starts and gen and len(starts) == len(gen):
        out["start_to_generate_s"] = [round(g - s, 3) for s, g in zip(starts, gen, strict=True)]
    out["wall_s_per_image"] = round((ran.t1 - ran.t0) / max(1, prompts * max(1, len(gen))), 3)
    launched = [t for t, text in ran.lines if text.startswith("$ ")]  # fplora echoes each command
    if launched:
        ends = [*launched[1:], ran.t1]
        out["process_s"] = [round(b - a, 3) for a, b in zip(launched, ends, strict=True)]
    return out


def timings(checks: Checks, parse: Any, *args: Any) -> dict[str, Any]:
    """Run a timing parser; if it raises, record that as a failed assert and go on with the stage's
    other asserts (on the GPU machine, a ZeroDivisionError here once skipped every train assert)."""
    try:
        return parse(*args)
    except Exception as exc:
        checks.ok(False, f"{parse.__name__} parses the log", f"{type(exc).__name__}: {exc}")
        return {}


# ------------------------------------------------------------------------------------------ specs
def spec_texts() -> dict[str, str]:
    c = CFG
    base = f"""\
# Written by benchmarks/gpu_e2e.py: the memo's house settings (configs/base.yaml) on this machine.
project: {PROJECT}

models:
  dir: {c.models}
  dit: diffusion_models/FramePackI2V_HY/diffusion_pytorch_model-00001-of-00003.safetensors
  vae: vae/diffusion_pytorch_model.safetensors
  text_encoder1: text_encoder/model-00001-of-00004.safetensors
  text_encoder2: text_encoder_2/model.safetensors
  image_encoder: image_encoder/model.safetensors
  fp8_llm: true
  vae_chunk_size: 32
  vae_spatial_tile_sample_min_size: 128

data:
  resolution: [{WIDTH}, {HEIGHT}]
  caption_extension: .txt
  batch_size: 16
  enable_bucket: true
  bucket_no_upscale: false

datasets:
  - jsonl: {c.jsonl}
    cache_directory: {c.cache}   # one cache for every spec here: same data, same one-frame settings
    num_repeats: 10

one_frame:
  clean_indices: [0, 10]
  target_index: 5
  no_post: true

train:
  output_dir: {c.runs}
  seed: 42
  mixed_precision: bf16
  attention: sdpa
  split_attn: true
  blocks_to_swap: 20
  img_in_txt_in_offloading: true
  gradient_checkpointing: true
  network: {{module: networks.lora_framepack, dim: {NETWORK_DIM}, alpha: 16}}
  optimizer: {{type: adamw8bit, learning_rate: 1.0e-3}}
  max_data_loader_n_workers: 1
  persistent_data_loader_workers: true
  timestep_sampling: shift
  discrete_flow_shift: 6.0
  save_state: true
  save_state_on_train_end: true
  logging: {{with: null}}

sample:
  at_first: false
  every_n_steps: null
  steps: 4
  prompts:
    - record: 1

launch:
  num_processes: 1
  mixed_precision: bf16
  dynamo_backend: "no"

infer:
  fp8_scaled: true
  attention: sdpa
  output_type: latent_images
  steps: 8
  multipliers: [1.0, 1.2]
  prompts:
    - record: 1
    - record: 2
"""
    e2e = f"""\
# The end-to-end run: `fplora train` (steps 1-2), then `fplora train --resume latest` with
# E2E_MAX_STEPS=4 (steps 3-4, segment -r1), then `fplora infer --lora step3`.
extends: base.yaml

data:
  batch_size: {c.e2e_batch}

train:
  blocks_to_swap: {c.e2e_swap}
  max_train_steps: "${{E2E_MAX_STEPS:-2}}"
  save_every_n_steps: 1
  logging: {{with: tensorboard, logging_dir: {c.runs}/logs, log_config: true}}

sample:
  at_first: true
  every_n_steps: 1
"""
    g = f"""\
# Data-parallel training on {c.gpus} GPUs (accelerate --multi_gpu), batch {c.e2e_batch} per GPU.
extends: base.yaml

data:
  batch_size: {c.e2e_batch}

train:
  blocks_to_swap: {c.e2e_swap}
  max_train_steps: {c.train2_steps}
  save_every_n_steps: null
  save_state: false
  save_state_on_train_end: false

launch:
  num_processes: {c.gpus}
"""
    timing = f"""\
# The memo's training settings (batch 16, blocks_to_swap 20), a few steps, for seconds per step.
extends: base.yaml

train:
  max_train_steps: {c.timing_steps}
  save_every_n_steps: null
  save_state: false
  save_state_on_train_end: false
"""
    return {"base": base, "e2e": e2e, c.g_version: g, "timing": timing}


def write_specs() -> None:
    CFG.configs.mkdir(parents=True, exist_ok=True)
    for version, text in spec_texts().items():
        path = CFG.spec(version)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)


# ------------------------------------------------------------------------------------------ local stand-ins
def write_png(path: Path, width: int, height: int, rgb: tuple[int, int, int]) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    raw = (b"\x00" + bytes(rgb) * width) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 1))
    path.write_bytes(data + chunk(b"IEND", b""))


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], meta: dict[str, str]) -> None:
    sizes = {"BF16": 2, "F16": 2, "F32": 4}
    header: dict[str, Any] = {"__metadata__": meta}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = sizes[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))


def local_models() -> None:
    for name in MODEL_FILES:
        path = CFG.models / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            write_safetensors(path, {}, {"stand_in": "gpu_e2e --local"})  # check reads headers
    (CFG.models / "weights.json").write_text("{}\n")


def local_dataset() -> None:
    images = CFG.data / "images"
    lines = []
    for i in range(CFG.records):
        record = {"image_path": str(images / f"img{i:03d}.png")}
        write_png(Path(record["image_path"]), WIDTH, HEIGHT, (40 * i % 256, 90, 160))
        for c in range(2):
            control = CFG.data / "control" / f"img{i:03d}_{c}.png"
            write_png(control, WIDTH, HEIGHT, (90, 40 * i % 256, 60 * c))
            record[f"control_path_{c}"] = str(control)
        record["caption"] = (
            f"a synthetic test card number {i}, the character changes clothes, plain background"
        )
        lines.append(json.dumps(record))
    CFG.jsonl.write_text("\n".join(lines) + "\n")


def write_fake_python() -> None:
    script = CFG.root / "bin" / "fake-python"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(__file__)} --fake-python "$@"\n'
    )
    script.chmod(0o755)


def _options(args: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    key = None
    for arg in args:
        if arg.startswith("--"):
            key = arg[2:].split("=", 1)[0]
            out[key] = [arg.split("=", 1)[1]] if "=" in arg else []
        elif key is not None:
            out[key].append(arg)
    return out


def fake_python(argv: list[str]) -> int:
    """A stand-in for the musubi-tuner Python: `-c` (fplora's import probe) and
    `-m accelerate.commands.launch [opts] -m musubi_tuner.<script> [args]`, writing outputs named
    and shaped as musubi-tuner 0.3.4 writes them (see shared/musubi-tuner/README.md)."""
    import tomllib  # the fake runs here, on Python >= 3.11

    if argv[:1] == ["-c"]:
        return 0
    if argv[:2] != ["-m", "accelerate.commands.launch"] or "-m" not in argv[2:]:
        print(f"fake-python: unexpected {argv}", file=sys.stderr)
        return 2
    rest = argv[2:]
    cut = rest.index("-m")
    accel, module, args = _options(rest[:cut]), rest[cut + 1], _options(rest[cut + 2 :])
    processes = int(accel.get("num_processes", ["1"])[0])
    if processes > 1 and "multi_gpu" not in accel:
        print("fake-python: several processes without --multi_gpu", file=sys.stderr)
        return 2

    def one(key: str, default: Any = None) -> Any:
        return args[key][0] if args.get(key) else default

    def log(text: str) -> None:
        print(f"INFO:fake:{text}", flush=True)

    if module in ("musubi_tuner.fpack_cache_latents", "musubi_tuner.fpack_cache_text_encoder_outputs"):
        dataset = tomllib.loads(Path(one("dataset_config")).read_text())
        log(f"Load dataset config from {one('dataset_config')}")
        latents = module.endswith("latents")
        if latents and "one_frame" not in args:
            print("fake-python: one-frame caching needs --one_frame", file=sys.stderr)
            return 2
        log("Encoding dataset [0]" if latents else "Encoding with Text Encoders")
        for entry in dataset["datasets"]:
            width, height = entry.get("resolution", dataset["general"]["resolution"])
            cache = Path(entry["cache_directory"])
            records = [json.loads(x) for x in Path(entry["image_jsonl_file"]).read_text().splitlines() if x]
            for n, rec in enumerate(records, 1):
                stem = Path(rec["image_path"]).stem
                name = (
                    f"{stem}_{width:04d}x{height:04d}_fp.safetensors"
                    if latents
                    else f"{stem}_fp_te.safetensors"
                )
                if not ("skip_existing" in args and (cache / name).exists()):  # as musubi-tuner does
                    write_safetensors(cache / name, {"latents": ("BF16", [16, 1, 2, 2])}, {})
                print(f"\r{n}it [00:00, 100.00it/s]", end="", flush=True)
            print(flush=True)
        return 0

    if module == "musubi_tuner.fpack_train_network":
        config = tomllib.loads(Path(one("config_file")).read_text())
        name = one("output_name", config["output_name"])
        steps = int(one("max_train_steps", config["max_train_steps"]))
        out = Path(config["output_dir"])
        resume = one("resume")
        if resume and not Path(resume).is_dir():
            print(f"fake-python: no state {resume}", file=sys.stderr)
            return 1
        if config.get("log_with") in ("tensorboard", "all"):
            if not config.get("logging_dir"):
                print("ValueError: logging_dir is required when log_with is tensorboard", file=sys.stderr)
                return 1
            (Path(config["logging_dir"]) / time.strftime("%Y%m%d%H%M%S")).mkdir(parents=True, exist_ok=True)
        dtype = {"bf16": "BF16", "fp16": "F16"}.get(config.get("save_precision", ""), "F32")
        dim = int(config["network_dim"])
        lora = {}
        for block in range(3):
            key = f"lora_unet_transformer_blocks_{block}_attn_to_q"
            lora[f"{key}.lora_down.weight"] = (dtype, [dim, 64])
            lora[f"{key}.lora_up.weight"] = (dtype, [64, dim])
            lora[f"{key}.alpha"] = ("F32", [])
        meta = {"ss_network_dim": str(dim)}
        sample_dir = out / "sample"
        prompts = config.get("sample_prompts")
        seed = 42

        def sample(tag: str) -> None:
            time.sleep(FAKE_SAMPLE_S)  # so that a s/step which counted sampling would show it
            stamp = time.strftime("%Y%m%d%H%M%S")
            write_png(sample_dir / f"{name}_{tag}_00_{stamp}_{seed}_000.png", WIDTH, HEIGHT, (1, 2, 3))

        def state(folder: Path) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "optimizer.bin").write_bytes(os.urandom(64))
            (folder / f"random_states_{0}.pkl").write_bytes(os.urandom(16))

        log(f"Loading DiT model from {config['dit']}, device=cpu")
        time.sleep(0.05)
        log(f"Loaded DiT model from {config['dit']}, info=<All keys matched successfully>")
        # musubi-tuner's tqdm bar (smoothing=0): reset when step 1 is done, then per step an update draw,
        # the step's sample and saves, and a set_postfix draw; the rate is n / elapsed since the reset
        bar_t0 = time.time()

        def draw(n: int, post: str = "") -> None:
            elapsed = time.time() - bar_t0
            if n == 0 or elapsed <= 0:
                rate = "?it/s"
            elif elapsed / n >= 1:
                rate = f"{elapsed / n:5.2f}s/it"
            else:
                rate = f"{n / elapsed:5.2f}it/s"
            clock = f"{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}"
            print(
                f"\rsteps: {100 * n // steps:3d}%|###       | {n}/{steps} [{clock}<00:00, {rate}{post}]",
                end="",
                flush=True,
            )

        draw(0)
        if prompts and config.get("sample_at_first"):
            sample("e000000")
        loss = 0.1
        every = config.get("save_every_n_steps")
        for step in range(1, steps + 1):
            time.sleep(FAKE_STEP_S)
            if step == 1:
                bar_t0 = time.time()
                draw(0)  # tqdm's reset draws 0/N; the update right after it is not drawn (mininterval)
            else:
                draw(step, f", avr_loss={loss:.4g}")
            loss = 0.1 + 0.01 * step
            if every and step % every == 0:
                write_safetensors(out / f"{name}-step{step:08d}.safetensors", lora, meta)
                if config.get("save_state"):
                    state(out / f"{name}-step{step:08d}-state")
            if prompts and config.get("sample_every_n_steps") and step % config["sample_every_n_steps"] == 0:
                sample(f"{step:06d}")
            draw(step, f", avr_loss={loss:.4g}")
        write_safetensors(out / f"{name}.safetensors", lora, meta)
        if config.get("save_state") or config.get("save_state_on_train_end"):
            state(out / f"{name}-state")
        draw(steps, f", avr_loss={loss:.4g}")
        print(flush=True)
        log("model saved.")
        return 0

    if module == "musubi_tuner.fpack_generate_video":
        weights, multipliers = args.get("lora_weight", []), args.get("lora_multiplier", [])
        if len(weights) != len(multipliers) or not all(Path(w).is_file() for w in weights):
            print(
                "fake-python: --lora_weight needs existing files, one --lora_multiplier each", file=sys.stderr
            )
            return 1
        save = Path(one("save_path"))
        save.mkdir(parents=True, exist_ok=True)
        lines = [x.strip() for x in Path(one("from_file")).read_text().splitlines()]
        lines = [x for x in lines if x and not x.startswith("#")]
        log("Loading VAE and Image Encoders for batch image preprocessing...")
        log("Loading DiT model for batch generation...")
        log("Generating latents for all prompts...")
        for i, line in enumerate(lines, 1):
            log(f"Generating latent for prompt {i}/{len(lines)}: {line.split(' --')[0]}")
            opts = _options(line.split(" ", 1)[1].split(" ")) if " " in line else {}
            seed = int(opts.get("d", ["0"])[0])
            width, height = int(opts.get("w", ["256"])[0]), int(opts.get("h", ["256"])[0])
            now = time.time()
            flag = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
            write_safetensors(save / f"{flag}_{seed}_latent.safetensors", {"l": ("BF16", [1])}, {})
            write_png(save / f"{flag}_{seed}__000.png", width, height, (9, 9, 9))
            time.sleep(0.01)
        log("Releasing DiT model from memory...")
        return 0
    print(f"fake-python: unknown module {module}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------------------------------ stages
def done_already(name: str) -> bool:
    """Whether a warm machine still holds a stage's outputs (for the `STAGE?` form)."""
    name_e2e = CFG.output_name("e2e")
    m = CFG.marks
    if name == "install":
        if CFG.local:
            return True
        return (m / "install.ok").is_file() and Path("/tmp/site/.e2e-installed").is_file()
    if name == "weights":
        return (CFG.models / "weights.json").is_file()
    if name == "data":
        return CFG.jsonl.is_file()
    if name == "check":
        return (m / "check.ok").is_file()
    if name == "cache":
        stamp = (CFG.cache / "fplora-cache.json").is_file()
        files = list(CFG.cache.glob("*_fp.safetensors")) if CFG.cache.is_dir() else []
        tes = list(CFG.cache.glob("*_fp_te.safetensors")) if CFG.cache.is_dir() else []
        return stamp and len(files) >= CFG.records and len(tes) >= CFG.records
    if name == "train":
        man = manifest("e2e")
        seg = (man or {}).get("segments") or [{}]
        return seg[0].get("exit_code") == 0 and (CFG.runs / f"{name_e2e}-step00000002.safetensors").is_file()
    if name == "resume":
        segs = (manifest("e2e") or {}).get("segments") or []
        return len(segs) >= 2 and segs[-1].get("exit_code") == 0
    if name == "infer":
        return (m / "infer.ok").is_file()
    if name in ("train2", "timing"):
        version = CFG.g_version if name == "train2" else "timing"
        segs = (manifest(version) or {}).get("segments") or []
        return bool(segs) and segs[-1].get("exit_code") == 0
    return False


def visible_gpus() -> set[str]:
    """The GPU indices this driver may use. nvidia-smi reports every GPU of the host whatever
    CUDA_VISIBLE_DEVICES says, so beside another lane (gpu_pair.sh) a stage's peak is taken over its
    own GPUs only (by index: the host's GPUs are alike, so CUDA's order and nvidia-smi's agree)."""
    named = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return {part.strip() for part in named.split(",") if part.strip().isdigit()}


def new_stage(name: str) -> dict[str, Any]:
    stage: dict[str, Any] = {
        "stage": name,
        "commands": [],
        "asserts": {"passed": [], "failed": []},
        "timings": {},
        "started_at_s": round(CFG.elapsed(), 1),
    }
    SUMMARY["stages"].append(stage)
    return stage


def finish(stage: dict[str, Any], t0: float) -> None:
    t1 = time.time()
    stage["wall_s"] = round(t1 - t0, 1)
    commands = stage["commands"]
    wrong = [c["rc"] for c in commands if c.get("rc") != c.get("expected_rc", 0)]
    stage["rc"] = wrong[0] if wrong else (0 if commands else None)
    if GPU:
        peaks = GPU.peaks(t0, t1)
        stage["peak_MiB_per_gpu"] = peaks
        mine = {k: v for k, v in peaks.items() if k in visible_gpus()} or peaks
        stage["peak_MiB"] = max(mine.values()) if mine else None
    with contextlib.suppress(OSError):
        stage["disk_free_GB"] = round(shutil.disk_usage(CFG.root).free / 1e9, 1)
    failed = stage["asserts"]["failed"]
    stage["asserts"]["n_passed"] = len(stage["asserts"]["passed"])
    stage["asserts"]["n_failed"] = len(failed)
    print(
        f"=== {stage['stage']} done: rc={stage['rc']} wall={stage['wall_s']}s peak={stage.get('peak_MiB')}MiB"
        f" asserts {len(stage['asserts']['passed'])} passed, {len(failed)} failed",
        flush=True,
    )
    save_summary()


def av_stub() -> None:
    """musubi-tuner imports PyAV at import time (dataset/media_utils.py) but uses it only for video.
    The 34 MB wheel (`.whl2`) leaves little room in a call's 64 MiB beside the rest, so a driver that
    writes no video may leave it behind and get this stub, which fails only when used."""
    stub = Path("/tmp/site/av")
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text(
        "def _missing(*a, **k):\n    raise RuntimeError('PyAV stub (benchmarks): video needs the av wheel')\n"
        "open = _missing\nclass VideoFrame:\n    from_ndarray = from_image = staticmethod(_missing)\n"
        "__version__ = '0.0.0+stub'\n"
    )


def stage_install(stage: dict[str, Any], checks: Checks) -> None:
    if CFG.local:
        ran = fplora(stage, "--version")
        checks.rc(ran, what="fplora --version (local)")
        return
    ran = run(stage, ["bash", str(GPU_E2E / "install.sh")], cwd=REPO)  # it reads .whl/ .whl2/ .musubi/
    checks.rc(ran, what="install.sh")
    if not (REPO / ".whl2").is_dir():
        av_stub()
        print("=== install: .whl2 (PyAV) not carried: a stub stands in; no stage may write video", flush=True)
    wheels = sorted(str(p) for p in WHL3.glob("*.whl"))
    checks.ok(wheels, ".whl3 holds wheels (run benchmarks/gpu_prepare.sh here first)")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    argv = [*pip, "--no-cache-dir", "--upgrade", "--target", "/tmp/site", *wheels]
    ran = run(stage, argv, extra_env={"PYTHONPATH": ""})  # pip itself from the image alone
    checks.rc(ran, what="pip install .whl3 into /tmp/site")
    probe = (
        "import importlib.metadata as md, json, sys\n"
        "import pydantic, ruamel.yaml, tomli_w, typer, rich, PIL, fplora\n"
        "names = ['pydantic', 'pydantic-core', 'ruamel.yaml', 'tomli-w', 'typing-extensions', 'typer',\n"
        "         'click', 'rich', 'pillow', 'accelerate', 'torch', 'transformers', 'bitsandbytes']\n"
        "def version(n):\n"
        "    try:\n"
        "        return md.version(n)\n"
        "    except md.PackageNotFoundError:\n"
        "        return None\n"
        "v = {n: version(n) for n in names}\n"
        "v['fplora_from'] = fplora.__file__; v['python'] = sys.version.split()[0]\n"
        "print('VERSIONS ' + json.dumps(v))\n"
    )
    ran = run(stage, [sys.executable, "-c", probe])
    checks.rc(ran, what="import fplora and its deps from /tmp/site + src")
    for _, text in ran.lines:
        if text.startswith("VERSIONS "):
            versions = json.loads(text[9:])
            SUMMARY["versions"] = versions
            checks.ok(str(SRC) in versions["fplora_from"], f"fplora runs from {SRC}")
            for wheel in WHL3.glob("*.whl"):
                dist, version = wheel.name.split("-")[:2]
                key = {"pydantic_core": "pydantic-core", "ruamel_yaml": "ruamel.yaml", "tomli_w": "tomli-w"}
                key |= {"typing_extensions": "typing-extensions", "pydantic": "pydantic"}
                if dist in key:
                    got = versions.get(key[dist])
                    checks.ok(got == version, f"{key[dist]} {version} from .whl3", got)
    ran = fplora(stage, "--help")
    checks.rc(ran, what="fplora --help")
    if not checks.failed:
        (CFG.marks / "install.ok").write_text("ok\n")


def stage_weights(stage: dict[str, Any], checks: Checks) -> None:
    if CFG.local:
        local_models()
        checks.ok(True, "stand-in model files")
        return
    ran = run(stage, [sys.executable, str(GPU_E2E / "make_weights.py"), "--root", str(CFG.models)])
    checks.rc(ran, what="make_weights.py")
    missing = [n for n in MODEL_FILES if not (CFG.models / n).is_file()]
    checks.ok(not missing, "all model files (memo layout)", missing)


def stage_data(stage: dict[str, Any], checks: Checks) -> None:
    if CFG.local:
        local_dataset()
    else:
        argv = [sys.executable, str(GPU_E2E / "make_dataset.py"), "--root", str(CFG.data)]
        ran = run(stage, [*argv, "--n", str(CFG.records), "--width", str(WIDTH), "--height", str(HEIGHT)])
        checks.rc(ran, what="make_dataset.py")
    lines = CFG.jsonl.read_text().splitlines() if CFG.jsonl.is_file() else []
    checks.ok(len(lines) == CFG.records, f"{CFG.records} records", len(lines))
    if lines:
        first = json.loads(lines[0])
        checks.ok({"control_path_0", "control_path_1", "caption"} <= set(first), "records have 2 controls")


def stage_check(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    for version in ("e2e", CFG.g_version, "timing"):
        ran = fplora(stage, "check", str(CFG.spec(version)))
        checks.rc(ran, what=f"fplora check {version}.yaml (models too)")
        checks.ok(re.search(r": ok, 1 dataset", ran.text), f"check {version}: ok line", ran.text[-300:])
        checks.ok(
            not re.search(r"^warning:", ran.text, re.MULTILINE),
            f"check {version}: no warnings",
            ran.text[-300:],
        )
    if not checks.failed:
        (CFG.marks / "check.ok").write_text("ok\n")


def stage_cache(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    ran = fplora(stage, "cache", str(CFG.spec("e2e")))
    checks.rc(ran, what="fplora cache e2e.yaml")
    stage["timings"] = timings(checks, cache_timings, ran, CFG.records)
    records = [json.loads(x) for x in CFG.jsonl.read_text().splitlines() if x]
    names = {p.name for p in CFG.cache.iterdir()} if CFG.cache.is_dir() else set()
    latents = [f"{Path(r['image_path']).stem}_{WIDTH:04d}x{HEIGHT:04d}_fp.safetensors" for r in records]
    tes = [f"{Path(r['image_path']).stem}_fp_te.safetensors" for r in records]
    checks.ok(not set(latents) - names, f"{len(latents)} latent caches by musubi's names", sorted(names)[:4])
    checks.ok(not set(tes) - names, f"{len(tes)} text-encoder caches by musubi's names", sorted(names)[:4])
    try:
        stamp = json.loads((CFG.cache / "fplora-cache.json").read_text())
    except (OSError, ValueError) as exc:
        stamp = {"error": str(exc)}
    checks.ok(stamp.get("resolution") == [WIDTH, HEIGHT], "fplora-cache.json stamp (resolution)", stamp)
    checks.ok(stamp.get("clean_indices") == [0, 10], "fplora-cache.json stamp (one-frame settings)")
    if latents and (CFG.cache / latents[0]).is_file():
        try:
            header = safetensors_header(CFG.cache / latents[0])
            checks.ok(len(header) > 1, f"{latents[0]} has tensors", list(header)[:6])
            stage["timings"]["latent_cache_keys"] = sorted(header)[:12]
        except (OSError, ValueError, struct.error) as exc:
            checks.ok(False, f"{latents[0]} header parses", exc)
    logs = sorted((CFG.configs / "e2e" / "logs").glob("cache-*.log"))
    checks.ok(logs, "fplora's cache log in configs/e2e/logs/")


def stage_train(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    name = CFG.output_name("e2e")
    stale = [p for p in CFG.runs.glob(f"{name}*")] if CFG.runs.is_dir() else []
    if stale:  # an earlier attempt on this machine that did not finish: start over
        stage["removed_before"] = sorted(p.name for p in stale)
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        for png in (CFG.runs / "sample").glob(f"{name}_*.png"):
            png.unlink()
    ran = fplora(stage, "train", str(CFG.spec("e2e")), extra_env={"E2E_MAX_STEPS": "2"})
    checks.rc(ran, what="fplora train e2e.yaml (steps 1-2)")
    stage["timings"] = timings(checks, step_timings, ran, CFG.e2e_batch)
    stage["timings"]["note"] = (
        "a sample and a LoRA+state save follow every step: s_per_step leaves them out,"
        " sample_and_save_s_after_step has them (the end-of-training saves come later and are in neither)"
    )
    if CFG.local == "fake":
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
    checks.ok((CFG.runs / f"{name}.log").is_file(), f"training log {name}.log")
    tb = CFG.runs / "logs"
    checks.ok(tb.is_dir() and any(tb.iterdir()), "tensorboard logging_dir written")
    config = (CFG.configs / "e2e" / "config.toml").read_text() if (CFG.configs / "e2e").is_dir() else ""
    checks.ok("max_train_steps = 2" in config, "rendered config.toml has max_train_steps = 2")
    checks.ok('save_precision = "bf16"' in config, 'rendered config.toml has save_precision = "bf16"')
    if ran.rc == 0:
        again = fplora(stage, "train", str(CFG.spec("e2e")), extra_env={"E2E_MAX_STEPS": "2"}, expect=1)
        checks.rc(again, 1, "a second `fplora train` without --resume is refused")
        checks.ok("already holds run" in again.text, "refusal names the existing run", again.text[-300:])


def _cache_digests() -> dict[str, str]:
    """When each cache file was written, by name: a recomputed file is written anew (a touched image
    encodes to the same bytes, so content alone cannot show that its latent was recomputed)."""
    out = {}
    for path in sorted(CFG.cache.iterdir()) if CFG.cache.is_dir() else []:
        if path.is_file() and path.name.endswith(".safetensors"):
            out[path.name] = str(path.stat().st_mtime_ns)
    return out


def _cache_scripts(ran: Ran) -> list[str]:
    """The musubi-tuner cache scripts fplora launched, from its `$ ` lines."""
    found = re.findall(r"-m musubi_tuner\.(fpack_cache_\w+)", "\n".join(line for _, line in ran.lines))
    return found


def stage_recache(stage: dict[str, Any], checks: Checks) -> None:
    """Edit the dataset after caching, as users do mid-project: fplora must refuse to train on the stale
    caches and recompute exactly the changed records with the real cache scripts.

    Changes the e2e dataset for good (a caption edited, a control image touched, the last record
    removed, then another caption edited), so run it last on a machine."""
    write_specs()
    lines = [x for x in CFG.jsonl.read_text().splitlines() if x]
    records = [json.loads(x) for x in lines]
    if not checks.ok(len(records) >= 6, "recache: at least 6 records", len(records)):
        return
    stems = [Path(r["image_path"]).stem for r in records]
    latent = {s: f"{s}_{WIDTH:04d}x{HEIGHT:04d}_fp.safetensors" for s in stems}
    text = {s: f"{s}_fp_te.safetensors" for s in stems}
    before = _cache_digests()
    # a caption edited (record 3), a control image re-saved (record 5), the last record removed
    records[2]["caption"] += ", edited after caching"
    control = Path(records[4]["control_path_0"])
    control = control if control.is_absolute() else CFG.jsonl.parent / control
    info = control.stat()
    os.utime(control, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    removed = records.pop()
    CFG.jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    gone = Path(removed["image_path"]).stem
    free = [v for v in ("timing", CFG.g_version) if manifest(v) is None]
    if free:  # a spec sharing the cache with no run yet: train gets as far as the cache check
        refused = fplora(stage, "train", str(CFG.spec(free[0])), expect=1)
        checks.rc(refused, 1, f"fplora train {free[0]}.yaml refuses the stale cache")
        checks.ok(
            f"2 of {len(records)} records changed since their caches were made" in refused.text,
            "refusal counts the changed records",
            refused.text[-400:],
        )
    else:
        stage["skipped_refusal"] = "every spec sharing the cache has a run already"
    ran = fplora(stage, "cache", str(CFG.spec("e2e")))
    checks.rc(ran, what="fplora cache e2e.yaml after the edits")
    checks.ok(
        "2 records changed since caching: recomputed, 2 files of removed records: deleted" in ran.text,
        "cache says what it recomputes and deletes",
        ran.text[-600:],
    )
    checks.ok(
        _cache_scripts(ran) == ["fpack_cache_latents", "fpack_cache_text_encoder_outputs"],
        "both scripts ran (an image and a caption changed)",
        _cache_scripts(ran),
    )
    after = _cache_digests()
    changed = {name for name in before if name in after and before[name] != after[name]}
    checks.ok(
        changed == {text[stems[2]], latent[stems[4]]},
        "exactly the edited caption's text-encoder file and the touched image's latent were recomputed",
        sorted(changed),
    )
    checks.ok(
        latent[gone] not in after and text[gone] not in after, "the removed record's cache files are gone"
    )
    stamp = json.loads((CFG.cache / "fplora-cache.json").read_text())
    checks.ok(len(stamp.get("records", {})) == len(records), f"stamp fingerprints {len(records)} records")
    # a caption-only edit: only the text-encoder script may load
    records[3]["caption"] += ", edited again"
    CFG.jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    before = after
    again = fplora(stage, "cache", str(CFG.spec("e2e")))
    checks.rc(again, what="fplora cache e2e.yaml after a caption edit")
    checks.ok(
        _cache_scripts(again) == ["fpack_cache_text_encoder_outputs"],
        "a caption edit runs only the text-encoder script",
        _cache_scripts(again),
    )
    after = _cache_digests()
    changed = {name for name in before if name in after and before[name] != after[name]}
    checks.ok(changed == {text[stems[3]]}, "only that record's text-encoder file changed", sorted(changed))
    stage["timings"] = {
        "cache_both_scripts_s": round(ran.t1 - ran.t0, 1),
        "cache_text_encoder_only_s": round(again.t1 - again.t0, 1),
    }
    done = fplora(stage, "cache", str(CFG.spec("e2e")))
    checks.ok("nothing to do" in done.text and not _cache_scripts(done), "then nothing is left to do")


def _first_run_files(name: str) -> list[Path]:
    runs = CFG.runs
    pattern = re.compile(rf"^{re.escape(name)}(-step\d{{8}})?(\.safetensors|-state)$")
    return sorted(p for p in runs.iterdir() if pattern.match(p.name)) if runs.is_dir() else []


def stage_resume(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    name = CFG.output_name("e2e")
    man_path = CFG.runs / f"{name}.fplora-run.json"
    man = manifest("e2e")
    if man and len(man.get("segments", [])) > 1:  # an earlier resume that failed: undo it
        stage["removed_before"] = [s["output_name"] for s in man["segments"][1:]]
        for seg in man["segments"][1:]:
            for path in CFG.runs.glob(f"{seg['output_name']}*"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            for png in (CFG.runs / "sample").glob(f"{seg['output_name']}_*.png"):
                png.unlink()
        man["segments"] = man["segments"][:1]
        man_path.write_text(json.dumps(man, indent=2) + "\n")
    t = time.time()
    before = sha256_tree(_first_run_files(name))
    stage["timings"]["sha256_s"] = round(time.time() - t, 1)
    checks.ok(before, "first-run files to compare", len(before))
    ran = fplora(stage, "train", str(CFG.spec("e2e")), "--resume", "latest", extra_env={"E2E_MAX_STEPS": "4"})
    checks.rc(ran, what="fplora train e2e.yaml --resume latest (steps 3-4)")
    stage["timings"].update(timings(checks, step_timings, ran, CFG.e2e_batch))
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
        state = str(seg.get("resumed_from") or "")
        checks.ok(state.endswith(f"{name}-step00000002-state"), "resumed from the step-2 state", state)
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
            str(CFG.spec("e2e")),
            "--resume",
            "latest",
            extra_env={"E2E_MAX_STEPS": "4"},
            expect=1,
        )
        checks.rc(again, 1, "resuming past max_train_steps is refused")
        checks.ok("max_train_steps" in again.text, "refusal names max_train_steps", again.text[-300:])


def stage_infer(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    segs = (manifest("e2e") or {}).get("segments") or []
    resumed = len(segs) >= 2 and segs[1].get("exit_code") == 0
    lora, step = ("step3", 3) if resumed else ("latest", 2)
    stage["lora"] = lora
    multipliers = ("1.0", "1.2")
    sample = CFG.runs / "sample"
    before = set(sample.glob("*/*__000.png")) if sample.is_dir() else set()
    # one generate process per multiplier, as proven on the H100s: the sweep worker that `infer` uses
    # for two or more cells has its own benchmark (benchmarks/sweep_speed.py)
    args = ["infer", str(CFG.spec("e2e")), "--lora", lora, "--no-sweep"]
    for m in multipliers:
        args += ["--multiplier", m]
    ran = fplora(stage, *args, extra_env={"E2E_MAX_STEPS": "4"})
    checks.rc(ran, what=f"fplora infer --lora {lora} --no-sweep --multiplier 1.0 --multiplier 1.2")
    stage["timings"] = timings(checks, infer_timings, ran, INFER_PROMPTS)
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
            checks.ok(png_size(png) == (WIDTH, HEIGHT), f"{png.name} is {WIDTH}x{HEIGHT}", png_size(png))
        log = sample / name / "generate.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        checks.ok(log.is_file(), f"{name}/generate.log")
        checks.ok("Error generating latent" not in text, f"{name}: no prompt failed (fp32/bf16 trap)")
    if not checks.failed:
        (CFG.marks / "infer.ok").write_text("ok\n")


def _fresh_run(stage: dict[str, Any], version: str) -> None:
    name = CFG.output_name(version)
    stale = list(CFG.runs.glob(f"{name}*")) if CFG.runs.is_dir() else []
    pattern = re.compile(
        rf"^{re.escape(name)}(-r\d+)?(-step\d{{8}}|-\d{{6}})?(\.safetensors|-state|\.log|\.lock)$"
    )
    stale = [p for p in stale if pattern.match(p.name) or p.name == f"{name}.fplora-run.json"]
    if stale:
        stage["removed_before"] = sorted(p.name for p in stale)
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def stage_train2(stage: dict[str, Any], checks: Checks) -> None:
    if CFG.gpus_seen < CFG.gpus and not CFG.local:
        stage["skipped"] = f"needs {CFG.gpus} GPUs, this machine has {CFG.gpus_seen}"
        print(f"=== train2: SKIPPED ({stage['skipped']})", flush=True)
        return
    write_specs()
    version = CFG.g_version
    _fresh_run(stage, version)
    ran = fplora(stage, "train", str(CFG.spec(version)))
    checks.rc(ran, what=f"fplora train {version}.yaml ({CFG.gpus} processes)")
    stage["timings"] = timings(checks, step_timings, ran, CFG.e2e_batch, CFG.gpus)
    stage["timings"]["batch_per_gpu"] = CFG.e2e_batch
    name = CFG.output_name(version)
    check_lora(checks, CFG.runs / f"{name}.safetensors")
    segs = (manifest(version) or {}).get("segments") or []
    if checks.ok(len(segs) == 1, f"{version} manifest has 1 segment", len(segs)) and segs:
        check_segment(checks, segs[0], 0, 0, CFG.train2_steps, processes=CFG.gpus)
        cmd = segs[0].get("command") or []
        checks.ok("--multi_gpu" in cmd, "launch has --multi_gpu", cmd[:12])
        i = cmd.index("--num_processes") if "--num_processes" in cmd else -1
        checks.ok(i >= 0 and cmd[i + 1] == str(CFG.gpus), f"launch has --num_processes {CFG.gpus}")
    if GPU and ran.rc == 0:
        peaks = GPU.peaks(ran.t0, ran.t1)
        busy = [k for k, v in peaks.items() if v > 8000]
        checks.ok(len(busy) >= CFG.gpus, f"{CFG.gpus} GPUs used (> 8 GB each)", peaks)


def stage_timing(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    _fresh_run(stage, "timing")
    ran = fplora(stage, "train", str(CFG.spec("timing")))
    checks.rc(ran, what="fplora train timing.yaml (batch 16, blocks_to_swap 20)")
    stage["timings"] = timings(checks, step_timings, ran, 16)
    stage["timings"]["settings"] = "batch 16, blocks_to_swap 20, gradient checkpointing, no samples, no saves"
    check_lora(checks, CFG.runs / f"{CFG.output_name('timing')}.safetensors")
    checks.ok(stage["timings"].get("s_per_step"), "s/step measured", stage["timings"].get("bar_elapsed_s"))


def stage_dry(stage: dict[str, Any], checks: Checks) -> None:
    """Local: spec writing, `fplora check` (--skip-models, then with the stand-in models) and dry runs."""
    write_specs()
    for version in ("e2e", CFG.g_version, "timing"):
        ran = fplora(stage, "check", str(CFG.spec(version)), "--skip-models")
        checks.rc(ran, what=f"fplora check {version}.yaml --skip-models")
        ran = fplora(stage, "check", str(CFG.spec(version)))
        checks.rc(ran, what=f"fplora check {version}.yaml (stand-in models)")
        checks.ok(
            not re.search(r"^warning:", ran.text, re.MULTILINE),
            f"check {version}: no warnings",
            ran.text[-300:],
        )
    ran = fplora(stage, "cache", str(CFG.spec("e2e")), "--dry-run")
    checks.rc(ran, what="fplora cache --dry-run")
    for want in (
        "musubi_tuner.fpack_cache_latents",
        "--one_frame",
        "musubi_tuner.fpack_cache_text_encoder_outputs",
    ):
        checks.ok(want in ran.text, f"cache command has {want}")
    ran = fplora(stage, "train", str(CFG.spec("e2e")), "--dry-run", extra_env={"E2E_MAX_STEPS": "2"})
    checks.rc(ran, what="fplora train e2e.yaml --dry-run")
    config = (CFG.configs / "e2e" / "config.toml").read_text()
    for want in (
        "max_train_steps = 2",
        "save_every_n_steps = 1",
        "sample_at_first = true",
        "sample_every_n_steps = 1",
        f"blocks_to_swap = {CFG.e2e_swap}",
        'log_with = "tensorboard"',
        "logging_dir = ",
        'save_precision = "bf16"',
        "one_frame = true",
        f"network_dim = {NETWORK_DIM}",
    ):
        checks.ok(want in config, f"e2e config.toml: {want}")
    dataset = (CFG.configs / "e2e" / "dataset.toml").read_text()
    checks.ok(f'cache_directory = "{CFG.cache}"' in dataset, "dataset.toml uses the shared cache folder")
    checks.ok(f"batch_size = {CFG.e2e_batch}" in dataset, f"dataset.toml batch_size {CFG.e2e_batch}")
    prompts = (CFG.configs / "e2e" / "prompts.txt").read_text()
    checks.ok("--of target_index=5,control_index=0;10,no_post" in prompts, "sample prompt has --of")
    checks.ok("--s 4" in prompts, "sample prompt has --s 4")
    infer = [x for x in (CFG.configs / "e2e" / "infer-prompts.txt").read_text().splitlines() if x[:1] != "#"]
    checks.ok(len(infer) == INFER_PROMPTS, f"{INFER_PROMPTS} infer prompt lines", infer)
    ran = fplora(stage, "train", str(CFG.spec(CFG.g_version)), "--dry-run")
    checks.rc(ran, what=f"fplora train {CFG.g_version}.yaml --dry-run")
    checks.ok(f"--multi_gpu --num_processes {CFG.gpus}" in ran.text, "g spec launches --multi_gpu")
    ran = fplora(stage, "train", str(CFG.spec("timing")), "--dry-run")
    checks.rc(ran, what="fplora train timing.yaml --dry-run")
    timing = (CFG.configs / "timing" / "config.toml").read_text()
    checks.ok("blocks_to_swap = 20" in timing, "timing config.toml: blocks_to_swap = 20")
    checks.ok("batch_size = 16" in (CFG.configs / "timing" / "dataset.toml").read_text(), "timing batch 16")
    checks.ok("sample_prompts" not in timing, "timing config.toml: no sampling")


STAGES = {
    "install": stage_install,
    "weights": stage_weights,
    "data": stage_data,
    "check": stage_check,
    "cache": stage_cache,
    "train": stage_train,
    "resume": stage_resume,
    "infer": stage_infer,
    "train2": stage_train2,
    "timing": stage_timing,
    "recache": stage_recache,
    "dry": stage_dry,
}


def cost(name: str) -> float:
    if CFG.local:
        return 0
    if name == "timing":
        return COST["timing"] + 26 * CFG.timing_steps
    if name == "train2":
        return COST["train2"] + 13 * max(0, CFG.train2_steps - 4)
    return COST[name]


def do_stage(spec: str) -> None:
    name = spec.rstrip("?")
    if name not in STAGES:
        raise SystemExit(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    if spec.endswith("?") and done_already(name):
        print(f"=== {name}: outputs already on this machine, skipped", flush=True)
        SUMMARY["stages"].append({"stage": name, "rc": None, "skipped": "outputs already present"})
        save_summary()
        return
    need = cost(name)
    if CFG.left() - PACK_MARGIN < need:
        why = f"not started: needs ~{need:.0f} s, {CFG.left() - PACK_MARGIN:.0f} s left before the deadline"
        print(f"=== {name}: SKIPPED ({why})", flush=True)
        SUMMARY["stages"].append({"stage": name, "rc": None, "skipped": why})
        save_summary()
        return
    stage = new_stage(name)
    stage["estimated_s"] = need
    stage["gpu_processes_before"] = gpu_processes()
    t0 = time.time()
    checks = Checks(stage)
    try:
        STAGES[name](stage, checks)
    except Exception as exc:  # a bug here must not lose the other stages' results
        checks.ok(False, f"stage {name} raised", f"{type(exc).__name__}: {exc}")
        import traceback

        traceback.print_exc()
    finish(stage, t0)


# ------------------------------------------------------------------------------------------ output
def save_summary() -> None:
    SUMMARY["elapsed_s"] = round(CFG.elapsed(), 1)
    stages = SUMMARY["stages"]
    SUMMARY["asserts_failed_total"] = sum(len(s.get("asserts", {}).get("failed", [])) for s in stages)
    SUMMARY["asserts_passed_total"] = sum(len(s.get("asserts", {}).get("passed", [])) for s in stages)
    text = json.dumps(SUMMARY, indent=1, default=str)
    for path in (CFG.root / "summary.json", CFG.out / "summary.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def pack() -> None:
    """$OUT: logs.tgz (text), images.tgz (PNGs, capped), manifests; at most 8 files in all."""
    root = CFG.root
    with tarfile.open(CFG.out / "logs.tgz", "w:gz") as tar:
        for sub in ("logs", "summary.json"):
            if (root / sub).exists():
                tar.add(root / sub, arcname=sub)
        if CFG.configs.is_dir():
            for path in sorted(CFG.configs.rglob("*")):
                if path.is_file() and "cache" not in path.parts and path.suffix != ".png":
                    tar.add(path, arcname=str(path.relative_to(root)))
        if CFG.runs.is_dir():
            for path in sorted(CFG.runs.rglob("*")):
                wanted = path.suffix in (".log", ".json") or "logs" in path.parts
                if wanted and path.is_file() and path.stat().st_size < 8 << 20:
                    tar.add(path, arcname=str(path.relative_to(root)))
            listing = {
                str(p.relative_to(CFG.runs)): p.stat().st_size
                for p in sorted(CFG.runs.rglob("*"))
                if p.is_file()
            }
            (root / "runs-listing.json").write_text(json.dumps(listing, indent=1))
            tar.add(root / "runs-listing.json", arcname="runs-listing.json")
    budget = 14 << 20
    pngs = sorted((CFG.runs / "sample").rglob("*.png")) if (CFG.runs / "sample").is_dir() else []
    if pngs:
        with tarfile.open(CFG.out / "images.tgz", "w:gz") as tar:
            used = 0
            for png in pngs:
                size = png.stat().st_size
                if used + size > budget:
                    continue
                used += size
                tar.add(png, arcname=str(png.relative_to(CFG.runs)))
    for version in ("e2e", CFG.g_version, "timing"):
        path = CFG.runs / f"{CFG.output_name(version)}.fplora-run.json"
        if path.is_file():
            shutil.copy(path, CFG.out / f"manifest-{version}.json")
    sizes = {p.name: p.stat().st_size for p in CFG.out.iterdir() if p.is_file()}
    print(f"$OUT: {sizes}", flush=True)


def print_table() -> None:
    for s in SUMMARY["stages"]:
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
    for folder in (CFG.root, CFG.logs, CFG.marks, CFG.out):
        folder.mkdir(parents=True, exist_ok=True)


def gpu_monitor() -> GpuMon:
    return GpuMon(CFG.logs / f"nvidia-smi-{time.strftime('%H%M%S')}.csv")


def run_stages(stages: list[str]) -> int:
    """Every driver's end: the stages in order, then always the summary and $OUT, even when one raised."""
    try:
        for spec in stages:
            do_stage(spec)
    finally:
        if GPU:
            GPU.stop()
        save_summary()
        pack()
    print_table()
    return 1 if SUMMARY.get("asserts_failed_total") else 0


def run_extension(
    doc: str,
    *,
    stages: dict[str, Any],
    done_already: Any,
    local_stages: list[str],
    local_root: str,
    local_records: int,
) -> int:
    """The main of a driver that extends this harness with stages of its own (sweep_speed.py,
    eval_check.py): the same options, Config and stage loop; `--local-fake` runs `local_stages`
    against the tests' fake musubi Python (tests/fakes/fake_python), which runs the real worker files."""
    global CFG, GPU
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
    CFG = Config(
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
    if mode:
        shim = CFG.root / "bin" / "fake-python"
        shim.parent.mkdir(parents=True, exist_ok=True)
        fake = REPO / "tests" / "fakes" / "fake_python"
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(fake))} "$@"\n')
        shim.chmod(0o755)
    GPU = None if mode else gpu_monitor()
    STAGES.update(stages)
    globals()["done_already"] = done_already
    SUMMARY.update(
        started=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), argv=sys.argv[1:], mode=mode or "gpu"
    )
    return run_stages(a.stages)


def main() -> int:
    global CFG, GPU
    if sys.argv[1:2] == ["--fake-python"]:
        return fake_python(sys.argv[2:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
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
    parser.add_argument("--records", type=int, default=None, help="dataset records (default 32; local 4)")
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
        GPU = None
        timings = step_timings(read_log(Path(a.timings_from)), a.e2e_batch, a.gpus or 1)
        print(json.dumps(timings, indent=1))
        return 0 if timings.get("s_per_step") else 1
    mode = "dry" if a.local_dry else "fake" if a.local_fake else None
    root = Path(a.root or ("/tmp/fpe2e-local" if mode else "/tmp/fpe2e"))
    if mode and not a.stages:
        a.stages = ["dry"] if mode == "dry" else [
            "install", "weights", "data", "check", "cache", "train", "resume", "infer", "train2", "timing"
        ]  # fmt: skip
        if root.exists() and a.root is None:
            shutil.rmtree(root)
    if mode == "dry":
        a.stages = ["install", "weights?", "data?", *a.stages]
    if not a.stages:
        parser.error("name at least one stage (or --local-dry / --local-fake)")
    seen = gpu_count()
    CFG = Config(
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
        records=a.records or (4 if mode else 32),
        local=mode,
    )
    make_folders()
    if mode:
        write_fake_python()
    GPU = None if mode else gpu_monitor()
    SUMMARY.update(
        started=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        argv=sys.argv[1:],
        mode=mode or "gpu",
        deadline_s=CFG.deadline,
        root=str(CFG.root),
        gpus_seen=seen,
        gpu_names=subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()
        if shutil.which("nvidia-smi")
        else [],
        settings={
            "e2e_batch": CFG.e2e_batch,
            "e2e_blocks_to_swap": CFG.e2e_swap,
            "train2_processes": CFG.gpus,
            "train2_steps": CFG.train2_steps,
            "timing_steps": CFG.timing_steps,
            "records": CFG.records,
        },
    )
    return run_stages(a.stages)


if __name__ == "__main__":
    sys.exit(main())
