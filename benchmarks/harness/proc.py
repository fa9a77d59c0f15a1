"""Commands of a stage: the environment musubi-tuner and fplora run in on the GPU machine, each command's
timestamped log, the deadline that stops a command with everything it started, and nvidia-smi sampling."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import state
from harness.state import PACK_MARGIN


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What musubi-tuner processes need on the GPU machine (offline, the stand-in tokenizers, no NVLink
    multicast), plus fplora's source and the musubi-tuner Python fplora starts."""
    e = dict(os.environ)
    paths = [str(state.SRC)] if state.CFG.local else ["/tmp/site", "/tmp/musubi/src", str(state.SRC)]
    if e.get("PYTHONPATH"):
        paths.append(e["PYTHONPATH"])
    e["PYTHONPATH"] = ":".join(paths)
    e.update(
        HF_HOME=str(state.CFG.root / "hf-home"),
        HF_HUB_CACHE=str(state.REPO / ".hf" / "hub"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
        TOKENIZERS_PARALLELISM="false",
        NCCL_NVLS_ENABLE="0",
        TORCH_SYMM_MEM_DISABLE_MULTICAST="1",
        NVSHMEM_DISABLE_NVLS="1",
        FPLORA_MUSUBI_PYTHON=str(state.CFG.root / "bin" / "fake-python") if state.CFG.local else "python3",
        # its local fake answers musubi-tuner's launches only, not fplora's rehearsal worker; a caller's
        # FPLORA_REHEARSE=0 keeps the rehearsal out of a speed run's device time
        FPLORA_REHEARSE="0" if state.CFG.local else os.environ.get("FPLORA_REHEARSE", "1"),
    )
    e.update(extra or {})
    return e


class SmiPoll:
    """nvidia-smi repeating one query every `every_ms` in the background, each line's two numbers
    (a GPU index or a pid, then MiB) handed to `take`; nothing at all without nvidia-smi. What the
    GPU monitor here and gpu_matrix.py's per-process one share."""

    def __init__(self, query: str, every_ms: int) -> None:
        self.proc: subprocess.Popen[str] | None = None
        if shutil.which("nvidia-smi") is None:
            return
        self.proc = subprocess.Popen(
            ["nvidia-smi", query, "--format=csv,noheader,nounits", "-lms", str(every_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                key, mib = (int(x) for x in line.split(",")[:2])
            except ValueError:
                continue
            self.take(key, mib)

    def take(self, key: int, mib: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait()


class GpuMon(SmiPoll):
    """nvidia-smi every 250 ms in the background: (time, gpu index, MiB used), also into `path`."""

    def __init__(self, path: Path):
        self.samples: list[tuple[float, int, int]] = []
        self.path = path
        self.file: Any = None
        super().__init__("--query-gpu=index,memory.used", 250)

    def take(self, key: int, mib: int) -> None:
        if self.file is None:
            self.file = self.path.open("a")
        t = time.time()
        self.samples.append((t, key, mib))
        self.file.write(f"{t:.2f},{key},{mib}\n")
        self.file.flush()

    def peaks(self, t0: float, t1: float) -> dict[str, int]:
        out: dict[str, int] = {}
        for t, index, mem in list(self.samples):
            if t0 <= t <= t1:
                out[str(index)] = max(out.get(str(index), 0), mem)
        return out


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


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
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
    log = state.CFG.logs / f"{stage['stage']}-{index}.log"
    cmd = shlex.join(argv)
    shown_env = {k: v for k, v in (extra_env or {}).items()}
    record: dict[str, Any] = {"cmd": cmd, "env": shown_env, "log": log.name, "expected_rc": expect}
    stage["commands"].append(record)
    timeout = state.CFG.left() - PACK_MARGIN
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
            cwd=cwd or state.CFG.root,
            start_new_session=True,
        )
        if started is not None:
            started(proc.pid)

        def stop() -> None:
            stopped.append(True)
            print(f"=== {stage['stage']}: deadline reached, stopping it", flush=True)
            stop_tree(proc)

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


def gpu_monitor() -> GpuMon:
    return GpuMon(state.CFG.logs / f"nvidia-smi-{time.strftime('%H%M%S')}.csv")
