"""The rehearsal worker's own plumbing (no musubi-tuner needed): how it ends, and its profiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from fakes.fixtures import Workspace, process_gone

from fplora.jobs.rehearse import stages, watch
from fplora.worker import rehearse as worker

pytest_plugins = ["fakes.fixtures"]

LEAVES = """
import multiprocessing, sys, threading, time
sys.path.insert(0, sys.argv[1])
import rehearse

def forever():
    time.sleep(3600)

def late_write():
    time.sleep(0.3)
    with open(sys.argv[2], "w") as out:
        out.write("written")

if __name__ == "__main__":
    child = multiprocessing.Process(target=forever, daemon=True)
    child.start()
    print(child.pid, flush=True)
    threading.Thread(target=late_write).start()
    rehearse.leave(3)
"""


def test_the_worker_leaves_with_its_code_after_its_threads_and_without_its_children(tmp_path: Path) -> None:
    """`leave` skips Python's teardown but not what the rehearsal's results need: a thread still
    writing finishes first, the worker's child processes are stopped (none outlives it), and the
    exit code is the worker's."""
    script = tmp_path / "leaves.py"
    script.write_text(LEAVES)
    written = tmp_path / "late.txt"
    done = subprocess.run(
        [sys.executable, str(script), str(stages.WORKER.parent), str(written)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert written.read_text() == "written"
    with pytest.raises(ProcessLookupError):  # stopped and reaped by the worker before it left
        os.kill(int(done.stdout.split()[0]), 0)


SIDECAR = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(worker.pid, flush=True)
time.sleep(60)
"""


def test_compile_workers_are_ended_with_their_sidecar_and_an_unknown_pool_is_shut_down() -> None:
    """Inductor's compile sidecar and the workers it started end when the worker leaves, none left
    running; a torch whose pools look otherwise gets its own shutdown instead."""
    sidecar = subprocess.Popen([sys.executable, "-c", SIDECAR], stdout=subprocess.PIPE, text=True)
    assert sidecar.stdout is not None
    compile_worker = int(sidecar.stdout.readline())
    shut: list[str] = []
    module = types.SimpleNamespace(
        _pool_set=[types.SimpleNamespace(process=sidecar)],
        shutdown_compile_workers=lambda: shut.append("shut"),
    )
    worker.end_compile_workers(module)
    assert sidecar.returncode is not None and shut == []
    deadline = time.monotonic() + 5
    while not process_gone(compile_worker) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process_gone(compile_worker)
    worker.end_compile_workers(
        types.SimpleNamespace(_pool_set=[object()], shutdown_compile_workers=lambda: shut.append("shut"))
    )
    assert shut == ["shut"]


def test_without_a_profile_folder_a_stage_runs_as_it_is() -> None:
    timeline = worker._Timeline(None)
    assert timeline.run("train", lambda: (0, None, None, [])) == (0, None, None, [])
    timeline.mark("train done")
    assert timeline.marks == []


def test_a_profiled_stage_leaves_its_profile_and_the_workers_timeline(tmp_path: Path) -> None:
    """`FPLORA_REHEARSE_PROFILE`: each stage's cProfile (`<stage>.prof`, readable by pstats), its
    top functions as text, and the worker's steps with their times, written as they happen (a
    stage that hangs and is killed still leaves the steps before it)."""
    import pstats

    folder = tmp_path / "profile"
    timeline = worker._Timeline(str(folder))
    timeline.mark("torch imported, stand-ins installed")

    def stage() -> tuple[int, None, None, list[str]]:
        return 0, None, None, sorted(["a stage's work"])

    assert timeline.run("cache-latents", stage) == (0, None, None, ["a stage's work"])
    timeline.mark("cache-latents done")
    steps = [name for name, _ in json.loads((folder / "timeline.json").read_text())]
    assert steps == ["main", "torch imported, stand-ins installed", "cache-latents done"]
    stats = pstats.Stats(str(folder / "cache-latents.prof"))
    assert any(function[2] == "stage" for function in stats.stats)  # type: ignore[attr-defined]
    assert "stage" in (folder / "cache-latents.txt").read_text()


def _torch(cuda: bool, started: list[str], monkeypatch: pytest.MonkeyPatch) -> object:
    """A torch whose CUDA answer is `cuda` and whose inductor records the start of its workers."""
    torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: cuda))
    pool = types.ModuleType("torch._inductor.async_compile")
    pool.maybe_warm_pool = lambda: started.append("pool")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    monkeypatch.setitem(sys.modules, "torch._inductor", types.ModuleType("torch._inductor"))
    monkeypatch.setitem(sys.modules, "torch._inductor.async_compile", pool)
    return torch


def test_compile_workers_start_before_the_stages_on_a_gpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    assert worker.warm_compile_workers(_torch(False, started, monkeypatch)) is False
    assert started == []  # a CPU: the stand-ins leave the compile out, no workers wanted
    assert worker.warm_compile_workers(_torch(True, started, monkeypatch)) is True
    assert started == ["pool"]
    torch = _torch(True, started, monkeypatch)
    monkeypatch.setitem(sys.modules, "torch._inductor.async_compile", None)  # a torch without it
    assert worker.warm_compile_workers(torch) is False  # left to torch's first compile


def test_the_gpu_is_warmed_beside_the_start_up_on_a_gpu_only() -> None:
    """Without CUDA there is nothing to warm; with it, a failure while warming (a kernel missing, a
    device that will not start) is not the worker's: the thread ends quietly, and the stage that
    meets the same failure reports it."""
    calls: list[str] = []

    def broken_device() -> int:
        calls.append("current_device")
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    cuda = types.SimpleNamespace(is_available=lambda: False, current_device=broken_device)
    functional = types.SimpleNamespace(scaled_dot_product_attention=None)
    torch = types.SimpleNamespace(cuda=cuda, nn=types.SimpleNamespace(functional=functional))
    assert worker.warm_gpu(torch) is None
    assert calls == []
    cuda.is_available = lambda: True
    thread = worker.warm_gpu(torch)
    assert thread is not None and thread.daemon
    thread.join(10)
    assert not thread.is_alive() and calls == ["current_device"]


def test_the_plan_tells_the_worker_whether_a_stage_compiles(workspace: Workspace) -> None:
    plan = workspace.root / "configs" / "v1" / "rehearsal" / "rendered" / "rehearsal-plan.json"
    assert workspace.cli("rehearse", str(workspace.spec_path)).exit_code == 0
    assert json.loads(plan.read_text())["compiles"] is False
    workspace.write_spec(train={"compile": True})
    compiled = workspace.cli("rehearse", str(workspace.spec_path))
    assert compiled.exit_code == 0, compiled.output
    assert json.loads(plan.read_text())["compiles"] is True


def _workers(workspace: Workspace) -> list[dict[str, Any]]:
    """The rehearsal workers the fake Python was started as, in order."""
    return [r for r in workspace.records() if r.get("args", [""])[0].endswith("worker/rehearse.py")]


def test_a_rehearsal_that_will_run_starts_its_worker_before_checking_the_spec(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spec never rehearsed here (or `--force`) has its worker started first, to take its plan on
    stdin once fplora has checked the spec and written the plan: the worker's start-up (torch)
    overlaps that work. A remembered pass starts none; a check that fails stops the waiting worker."""
    from fplora.jobs.rehearse import report

    started: list[Any] = []

    def start_worker(python: str, root: Path) -> Any:
        started.append(watch.start_worker(python, root))
        return started[-1]

    monkeypatch.setattr(report, "start_worker", start_worker)
    first = workspace.cli("rehearse", str(workspace.spec_path))
    assert first.exit_code == 0, first.output
    (worker,) = _workers(workspace)
    assert worker["args"][1:] == ["--plan", "-"] and worker["cwd"] == str(workspace.render_dir / "rehearsal")
    assert len(started) == 1 and started[0].proc.returncode == 0
    again = workspace.cli("rehearse", str(workspace.spec_path))
    assert "not run again" in again.output and len(started) == 1
    (workspace.root / "data" / "dataset-v1" / "metadata-v1.jsonl").write_text('{"image_path": 3}\n')
    failed = workspace.cli("rehearse", "--force", str(workspace.spec_path))
    assert failed.exit_code == 1 and "rehearsal" not in failed.output, failed.output
    assert len(started) == 2 and started[1].proc.returncode is not None  # stopped and reaped
    assert process_gone(started[1].proc.pid)


def test_a_worker_that_cannot_start_early_is_left_to_start_later(tmp_path: Path) -> None:
    """No such Python, or a rehearsal folder that cannot be made: no early worker, and no error here
    (the musubi-tuner check and the rehearsal's own writes say what is wrong, in one line)."""
    assert watch.start_worker(str(tmp_path / "no-python"), tmp_path / "rehearsal") is None
    (tmp_path / "file").write_text("")
    assert watch.start_worker(sys.executable, tmp_path / "file" / "rehearsal") is None
