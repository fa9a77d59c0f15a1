"""Running the rehearsal: write its files, start the worker, read its events as they stream, stop it
when a stage runs past its time limit, and judge each stage (passed, failed, or not rehearsable on
this machine)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fplora import process
from fplora.atomic import write_atomic
from fplora.jobs.rehearse.checks import outputs_missing
from fplora.jobs.rehearse.machine import asks_compile, machine_reason, missing_on_training_box, stage_kernels
from fplora.jobs.rehearse.stages import WORKER, Rehearsal, Stage
from fplora.jobs.rehearse.watchdog import STAGE_IDLE, Watchdog, tree_cpu
from fplora.protocol import rehearse as rehearse_protocol
from fplora.spec.models import MODEL_KEYS
from fplora.state import user_cache

STAGE_LIMIT = 300.0
"""Seconds a stage may take, whatever it does, before it counts as hung (the slowest, training, takes
~15 s on a 2-core CPU): the hard cap over `watchdog.STAGE_IDLE`, which stops a stage that waits on
nothing much sooner."""


@dataclass
class Outcome:
    stage: Stage
    code: int | None = None
    error: str | None = None
    where: str | None = None
    seconds: float = 0.0
    problem: str | None = None  # why the stage failed, None when it passed
    not_rehearsed: str | None = None  # why this machine cannot run the stage's code path at all
    frames: list[str] = field(default_factory=list)  # musubi-tuner functions the error passed through
    log: list[str] = field(default_factory=list)


class _Watch:
    """Reads the worker's events as they stream, splits its log by stage, and stops the worker
    when a stage hangs (`watchdog.Watchdog`'s rules, asked every `poll` seconds by a thread)."""

    def __init__(
        self,
        rehearsal: Rehearsal,
        limit: float,
        say: Callable[[str], None],
        *,
        idle: float = STAGE_IDLE,
    ) -> None:
        self.by_name = {s.name: Outcome(s) for s in rehearsal.stages}
        self.current: Outcome | None = None
        self.limit, self.idle, self.say = limit, idle, say
        self.poll = min(1.0, idle / 4, limit / 4)
        self.missing_kernels: list[str] = []
        self.notes: list[str] = []
        self.pid: int | None = None
        self.dog: Watchdog | None = None
        self.done = threading.Event()
        self.hung: Outcome | None = None
        self.hang: str | None = None  # why the hung stage counts as hung
        self.preamble: list[str] = []
        self.cuda = False

    def started(self, pid: int) -> None:
        self.pid = pid
        self.dog = Watchdog(self.limit, self.idle, tree_cpu(pid))
        threading.Thread(target=self._patrol, args=(self.dog,), daemon=True).start()

    def finish(self) -> None:
        """The worker ended: the patrol stops."""
        self.done.set()

    def _patrol(self, dog: Watchdog) -> None:
        while not self.done.wait(self.poll):
            outcome = self.current
            why = dog.verdict()
            if outcome is not None and why is not None:
                self._stop(outcome, why)
                return

    def _stop(self, outcome: Outcome, why: str) -> None:
        self.hung, self.hang = outcome, why
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)

    def __call__(self, line: str) -> None:
        if self.dog is not None:
            self.dog.output()
        event = rehearse_protocol.parse_event(line)
        if event is None:
            (self.current.log if self.current else self.preamble).append(line)
            return
        kind = event["event"]
        if kind == "kernels":
            self.missing_kernels = list(event.get("missing", []))
            self.cuda = bool(event.get("cuda"))
        elif kind == "note":
            self.notes.append(str(event.get("text")))
        elif kind == "stage_started":
            outcome = self.by_name.get(event["stage"])
            self.current = outcome
            if outcome is not None:
                self.say(f"  {outcome.stage.name}: {outcome.stage.what} …")
                if self.dog is not None:
                    self.dog.start()
        elif kind == "stage_done":
            if self.dog is not None:
                self.dog.stop()
            outcome = self.by_name.get(event["stage"])
            if outcome is not None:
                outcome.code = int(event.get("code", 1))
                outcome.error, outcome.where = event.get("error"), event.get("where")
                outcome.frames = [str(f) for f in event.get("frames") or []]
                outcome.seconds = float(event.get("seconds", 0.0))
            self.current = None


def died_in_stage(code: int) -> str:
    """Why a stage that started never ended, when nothing stopped it: the worker's exit (the kernel's
    out-of-memory killer sends SIGKILL: the stand-in models are tiny, but they run on the spec's own
    images at its resolution and batch size)."""
    if code <= 128:
        return f"the rehearsal worker exited ({code}) in the middle of it"
    try:
        name = signal.Signals(code - 128).name
    except ValueError:
        name = f"signal {code - 128}"
    why = f"the rehearsal worker was killed by {name} in the middle of it"
    if code - 128 == signal.SIGKILL:
        why += (
            " — out of memory? the stand-in models are tiny, but they run at the spec's resolution and"
            " batch size: rehearse on a machine with more memory (the GPU box, where train rehearses first)"
        )
    return why


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


@dataclass
class Result:
    outcomes: list[Outcome]
    log: Path
    seconds: float
    notes: list[str]
    stood_in: list[str] = field(default_factory=list)  # kernels PyTorch's attention stood in for


def compile_cache() -> dict[str, str]:
    """torch.compile's caches for the worker, kept in the user's cache folder (inductor's default is
    under /tmp): a spec that compiles pays inductor's code generation for the stand-in DiT (~45 s on
    an H100) once per machine, and later rehearsals load the compiled graphs and kernels (what is
    left is tracing, ~10 s). Settings the user made are left as they are."""
    cache = user_cache()
    wanted = {
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor-rehearsal"),
        "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
        "TORCHINDUCTOR_AUTOGRAD_CACHE": "1",
    }
    return {key: value for key, value in wanted.items() if key not in os.environ}


def _worker_env(root: Path) -> dict[str, str]:
    """The worker's environment besides the user's. The worker runs where fplora runs, as `fplora
    train`, `infer` and `eval` run musubi-tuner, so that a relative path in a pass-through option
    (`musubi.generate.end_image_path: refs/end.png`) is read from the same folder as on the GPU box;
    what the run itself would leave there, wandb's offline run files, goes under the rehearsal's
    folder `root` instead (musubi-tuner points wandb at `logging_dir` where one is set)."""
    env = {
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **compile_cache(),
    }
    if "WANDB_DIR" not in os.environ:
        env["WANDB_DIR"] = str(root)  # its `wandb` folder there is cleared with the stages' outputs
    return env


def start_worker(python: str, root: Path) -> process.Started | None:
    """The rehearsal worker, started before fplora has checked the spec and planned the rehearsal
    (`--plan -`: the plan's path comes on its stdin): its start-up (importing torch, ~1.2 s on a
    GPU box and ~2 s on a 2-core CPU, and warming the GPU) runs while fplora checks, renders and
    writes the rehearsal's files, instead of after. `root` is the rehearsal's folder (made here).
    None when the Python cannot be started (`ensure_musubi` says why) or
    the folder cannot be made (the rehearsal's own writes say why): the worker then starts later."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        return process.start([python, str(WORKER), "--plan", "-"], env=_worker_env(root))
    except OSError:
        return None


def run(
    rehearsal: Rehearsal,
    python: str,
    *,
    say: Callable[[str], None],
    limit: float = STAGE_LIMIT,
    idle: float = STAGE_IDLE,
    worker: process.Started | None = None,
) -> Result:
    """Write the rehearsal's files, run the worker (or hand the plan to the one `start_worker`
    began), judge each stage."""
    root = rehearsal.root
    for folder in ("out", "cache", "data", "rendered", "wandb"):
        shutil.rmtree(root / folder, ignore_errors=True)
    for path, text in rehearsal.files.items():
        write_atomic(path, text)
    for key in MODEL_KEYS[1:]:
        standin = root / "models" / key
        standin.mkdir(parents=True, exist_ok=True)
        target = standin / Path(getattr(rehearsal.spec.models, key)).name
        if not target.exists():
            target.write_bytes(b"")  # the stand-in loaders do not read it (the VAE's: the worker writes it)
    plan_file = root / "rendered" / "rehearsal-plan.json"
    stages = [
        {"name": s.name, "argv": s.argv, "needs": s.needs, "outputs": s.outputs, "steps": s.steps}
        for s in rehearsal.stages
    ]
    vae = root / "models" / "vae" / Path(rehearsal.spec.models.vae).name
    plan = {
        "protocol": rehearse_protocol.PROTOCOL,
        "dit_shards": [str(p) for p in rehearsal.dit_shards],
        "standin_cache": str(user_cache() / "rehearsal-standins"),
        "standin_loras": [{"source": str(s), "target": str(t)} for s, t in rehearsal.loras.items()],
        "vae": str(vae),
        "compiles": any(asks_compile(s) for s in rehearsal.stages),
        "stages": stages,
    }
    write_atomic(plan_file, json.dumps(plan, indent=1) + "\n")
    log = rehearsal.log
    log.unlink(missing_ok=True)
    watch = _Watch(rehearsal, limit, say, idle=idle)
    started = time.monotonic()
    if worker is not None:
        worker.tell(str(plan_file))
    try:
        with open(os.devnull, "wb") as quiet:
            result = process.run(
                worker or [python, str(WORKER), "--plan", str(plan_file)],
                env=_worker_env(root),
                log=log,
                on_line=watch,
                echo=quiet,
                on_start=watch.started,
            )
    finally:
        watch.finish()
    seconds = time.monotonic() - started
    swapped = sorted({s.name for s in rehearsal.stages if _int(s.options.get("blocks_to_swap")) > 0})
    if swapped and not watch.cuda:
        watch.notes.append(
            f"block swap ({', '.join(swapped)}): no CUDA here, so the block count was checked by"
            " musubi-tuner's own code and the swap ran its CPU-to-CPU path; the GPU's streams and the"
            " memory it saves are not exercised"
        )
    compiled = sorted({s.name for s in rehearsal.stages if asks_compile(s)})
    if compiled and not watch.cuda:
        watch.notes.append(
            f"torch.compile ({', '.join(compiled)}): not rehearsed here (on a CPU it would build C++"
            " kernels for minutes, not the GPU's); musubi-tuner's compile options and code ran with the"
            " compile itself left out"
        )
    outcomes = [watch.by_name[s.name] for s in rehearsal.stages]
    selected = {k for s in rehearsal.stages for k in stage_kernels(s)}
    stood_in = [] if watch.cuda else sorted(selected & set(watch.missing_kernels))
    for kernel in stood_in:
        users = ", ".join(s.name for s in rehearsal.stages if kernel in stage_kernels(s))
        watch.notes.append(
            f"attention kernel {kernel} ({users}): not installed here (it needs CUDA); PyTorch's"
            " attention on the same tensors stood in for it, so everything around the kernel was"
            " rehearsed; the kernel itself is checked by the GPU box's rehearsal, which fails if it"
            " is not installed there"
        )
    failed_names: set[str] = set()
    unrehearsed: set[str] = set()
    for outcome in outcomes:
        stage = outcome.stage
        blocked = [n for n in stage.needs if n in failed_names]
        if watch.hung is outcome:
            outcome.problem = watch.hang
        elif outcome.code is None and watch.current is outcome:
            outcome.problem = died_in_stage(result.returncode)
        elif outcome.code is None:
            waiting = [n for n in stage.needs if n in unrehearsed]
            if waiting and not blocked:
                outcome.not_rehearsed = f"it needs {', '.join(waiting)}, which could not run here"
                unrehearsed.add(stage.name)
                continue
            outcome.problem = (
                f"not run: {', '.join(blocked)} failed"
                if blocked
                else "not run (the rehearsal stopped before it)"
            )
        elif outcome.code != 0:
            outcome.problem = f"exit {outcome.code}"
        elif (missing := outputs_missing(stage.outputs)) is not None:
            outcome.problem = missing
        elif stage.check is not None:
            outcome.problem = stage.check("\n".join(outcome.log))
        if outcome.problem is None:
            continue
        machine = machine_reason(python, outcome, watch) if outcome.code is not None else None
        if machine is not None and not watch.cuda:
            # without a GPU this code path cannot run at all: said, not failed (the GPU box's own
            # rehearsal, with CUDA and its kernels, runs it)
            outcome.problem, outcome.not_rehearsed = None, machine
            unrehearsed.add(stage.name)
            continue
        if machine is not None:
            outcome.problem = missing_on_training_box(rehearsal.spec, python, outcome, watch) or (
                f"{machine}: install it here (the real run would fail the same way)"
            )
        failed_names.add(stage.name)
    if result.interrupted and watch.hung is None:
        raise KeyboardInterrupt
    return Result(
        outcomes=outcomes,
        log=log,
        seconds=seconds,
        notes=rehearsal.notes + watch.notes,
        stood_in=stood_in,
    )
