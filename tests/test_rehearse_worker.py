"""The rehearsal worker's own plumbing (no musubi-tuner needed): how it ends, and its profiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
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


def test_attention_is_kept_off_cudnn_on_a_gpu_only() -> None:
    """cuDNN's attention builds a plan at every new shape, which a rehearsal meets once each: on a
    GPU the worker switches it off (the same call runs on the flash or memory-efficient kernels);
    without CUDA, or with a torch that has no such switch, nothing is touched."""
    switched: list[bool] = []
    cuda = types.SimpleNamespace(is_available=lambda: False)
    backends = types.SimpleNamespace(cuda=types.SimpleNamespace(enable_cudnn_sdp=switched.append))
    torch = types.SimpleNamespace(cuda=cuda, backends=backends)
    assert worker.spare_cudnn_attention(torch) is False
    assert switched == []
    cuda.is_available = lambda: True
    assert worker.spare_cudnn_attention(torch) is True
    assert switched == [False]
    torch.backends = types.SimpleNamespace(cuda=types.SimpleNamespace())  # an older torch
    assert worker.spare_cudnn_attention(torch) is False
    assert switched == [False]


def test_the_plan_tells_the_worker_whether_a_stage_compiles(workspace: Workspace) -> None:
    plan = workspace.root / "configs" / "v1" / "rehearsal" / "rendered" / "rehearsal-plan.json"
    assert workspace.cli("rehearse", str(workspace.spec_path)).exit_code == 0
    assert json.loads(plan.read_text())["compiles"] is False
    workspace.write_spec(train={"compile": True})
    compiled = workspace.cli("rehearse", str(workspace.spec_path))
    assert compiled.exit_code == 0, compiled.output
    assert json.loads(plan.read_text())["compiles"] is True


def test_the_evaluation_stage_compiles_as_fplora_eval_does(workspace: Workspace) -> None:
    """`eval.compile` (else `train.compile`) is what `fplora eval` compiles with, using training's
    compile options: a spec whose training does not compile but whose evaluation does meets a bad
    `compile_backend` only in `fplora eval`, so the rehearsal's evaluation stage must compile too
    (without CUDA torch.compile still checks its options there). The plan says a stage compiles."""
    rendered = workspace.root / "configs" / "v1" / "rehearsal" / "rendered"
    workspace.write_spec(eval={"records": [2], "compile": True})
    done = workspace.cli("rehearse", str(workspace.spec_path))
    assert done.exit_code == 0, done.output
    assert json.loads((rendered / "eval-plan.json").read_text())["compile"] is True
    assert json.loads((rendered / "rehearsal-plan.json").read_text())["compiles"] is True
    workspace.write_spec(eval={"records": [2], "compile": None})
    done = workspace.cli("rehearse", str(workspace.spec_path))
    assert done.exit_code == 0, done.output
    assert json.loads((rendered / "eval-plan.json").read_text())["compile"] is False
    assert json.loads((rendered / "rehearsal-plan.json").read_text())["compiles"] is False


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
    assert worker["args"][1:] == ["--plan", "-"] and worker["cwd"] == str(Path.cwd())
    assert len(started) == 1 and started[0].proc.returncode == 0
    again = workspace.cli("rehearse", str(workspace.spec_path))
    assert "not run again" in again.output and len(started) == 1
    (workspace.root / "data" / "dataset-v1" / "metadata-v1.jsonl").write_text('{"image_path": 3}\n')
    failed = workspace.cli("rehearse", "--force", str(workspace.spec_path))
    assert failed.exit_code == 1 and "rehearsal" not in failed.output, failed.output
    assert len(started) == 2 and started[1].proc.returncode is not None  # stopped and reaped
    assert process_gone(started[1].proc.pid)


def test_the_worker_runs_where_fplora_runs_and_keeps_wandb_in_the_rehearsal(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fplora train`, `infer` and `eval` run musubi-tuner in the folder fplora runs in, so a relative
    path in a pass-through option (`musubi.generate.end_image_path: refs/end.png`, which `check`
    finds from there too) is read from that folder: the rehearsal's worker runs there as well (it ran
    in the rehearsal's folder, where such a path named nothing and generate failed on a spec that
    works). wandb's offline files, which a run leaves in that folder, go to the rehearsal's."""
    elsewhere = workspace.root / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    done = workspace.cli("rehearse", str(workspace.spec_path))
    assert done.exit_code == 0, done.output
    (worker,) = _workers(workspace)
    assert worker["cwd"] == str(elsewhere)
    root = workspace.render_dir / "rehearsal"
    assert watch._worker_env(root)["WANDB_DIR"] == str(root)
    monkeypatch.setenv("WANDB_DIR", str(elsewhere))
    assert "WANDB_DIR" not in watch._worker_env(root)  # the user's own setting stands


def test_a_worker_that_cannot_start_early_is_left_to_start_later(tmp_path: Path) -> None:
    """No such Python, or a rehearsal folder that cannot be made: no early worker, and no error here
    (the musubi-tuner check and the rehearsal's own writes say what is wrong, in one line)."""
    assert watch.start_worker(str(tmp_path / "no-python"), tmp_path / "rehearsal") is None
    (tmp_path / "file").write_text("")
    assert watch.start_worker(sys.executable, tmp_path / "file" / "rehearsal") is None


SCRIPT = """
import json
from collections import OrderedDict
try:
    import fplora_ahead_dep
except ImportError:
    fplora_ahead_dep = None
if True:
    from fplora_ahead_pkg import lazy_name, sub

def main():
    import fplora_never_imported_ahead
"""


def _launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """accelerate's launch parser, as far as the worker reads it (accelerate is not in fplora's own
    environment)."""
    import argparse

    def parser() -> argparse.ArgumentParser:
        made = argparse.ArgumentParser()
        made.add_argument("--num_cpu_threads_per_process")
        made.add_argument("-m", "--module", action="store_true")
        made.add_argument("training_script")
        made.add_argument("training_script_args", nargs=argparse.REMAINDER)
        return made

    launch = types.ModuleType("accelerate.commands.launch")
    launch.launch_command_parser = parser  # type: ignore[attr-defined]
    for name in ("accelerate", "accelerate.commands"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "accelerate.commands.launch", launch)


def _stage(module: str) -> list[str]:
    return [
        "python",
        *worker.ACCELERATE_LAUNCH,
        "--num_cpu_threads_per_process",
        "1",
        "-m",
        module,
        "--x",
        "1",
    ]


def test_a_stage_scripts_top_level_imports_are_read_from_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the script imports when it starts, in order, including under its top-level `try:` and
    `if`, and not what its functions import (optional packages the spec may never reach)."""
    _launcher(monkeypatch)
    (tmp_path / "fplora_ahead_script.py").write_text(SCRIPT)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert worker.script_imports(_stage("fplora_ahead_script")) == [
        ("json", None),
        ("collections", "OrderedDict"),
        ("fplora_ahead_dep", None),
        ("fplora_ahead_pkg", "lazy_name"),
        ("fplora_ahead_pkg", "sub"),
    ]
    assert worker.script_imports(_stage("fplora_no_such_script")) == []
    assert worker.script_imports(["python", "not-a-launch"]) == []


def test_the_stages_imports_are_done_while_the_gpu_warms_and_no_longer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the warm-up thread lives, the scripts' imports run ahead (a lazily loaded name is
    loaded, a submodule imported, a module that fails left for its stage to report); once it has
    ended, nothing more is imported."""
    _launcher(monkeypatch)
    (tmp_path / "fplora_ahead_script.py").write_text(SCRIPT)
    package = tmp_path / "fplora_ahead_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "loaded = []\ndef __getattr__(name):\n    if name == 'lazy_name':\n        loaded.append(name)\n"
        "        return 1\n    raise AttributeError(name)\n"
    )
    (package / "sub.py").write_text("")
    (tmp_path / "fplora_ahead_dep.py").write_text("raise RuntimeError('fails at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("fplora_ahead_pkg", "fplora_ahead_pkg.sub", "fplora_ahead_dep"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    warm = threading.Event()
    warming = threading.Thread(target=warm.wait, args=(10,))
    warming.start()
    stages = [{"argv": _stage("fplora_ahead_script")}]
    assert worker.import_ahead(stages, warming) == 4  # json, OrderedDict, lazy_name, sub; the dep failed
    assert sys.modules["fplora_ahead_pkg"].loaded == ["lazy_name"]
    assert "fplora_ahead_pkg.sub" in sys.modules and "fplora_ahead_dep" not in sys.modules
    warm.set()
    warming.join()
    monkeypatch.delitem(sys.modules, "fplora_ahead_pkg.sub")
    assert worker.import_ahead(stages, warming) == 0
    assert "fplora_ahead_pkg.sub" not in sys.modules


def test_packages_no_musubi_code_calls_are_hidden_from_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(worker, "UNUSED_PACKAGES", ("colorsys",))
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    try:
        worker.hide_unused_packages()
        assert importlib.util.find_spec("colorsys") is None  # transformers' question: not installed
        with pytest.raises(ImportError):
            import colorsys  # noqa: F401
    finally:
        sys.modules.pop("colorsys", None)


def test_the_deepspeed_launcher_stops_a_stage_where_deepspeed_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`launch: {extra: {use_deepspeed: true}}`: accelerate's launch_command hands such a launch to its
    DeepSpeed launcher, which raises before the script starts where the package is missing (it is not
    among musubi-tuner's dependencies). The rehearsal, which runs the script in its own process, makes
    the same check, so that the launch fails here as on the GPU box; `cpu` takes the simple launcher."""
    installed = {"deepspeed": False}
    utils = types.ModuleType("accelerate.utils")
    utils.is_deepspeed_available = lambda: installed["deepspeed"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "accelerate", types.ModuleType("accelerate"))
    monkeypatch.setitem(sys.modules, "accelerate.utils", utils)
    with pytest.raises(ImportError, match="needs the package deepspeed"):
        worker._launcher_check(types.SimpleNamespace(use_deepspeed=True, cpu=False))
    worker._launcher_check(types.SimpleNamespace(use_deepspeed=True, cpu=True))
    worker._launcher_check(types.SimpleNamespace(use_deepspeed=False, cpu=False))
    installed["deepspeed"] = True
    worker._launcher_check(types.SimpleNamespace(use_deepspeed=True, cpu=False))


def _no_deepspeed(monkeypatch: pytest.MonkeyPatch) -> None:
    utils = types.ModuleType("accelerate.utils")
    utils.is_deepspeed_available = lambda: False  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "accelerate", types.ModuleType("accelerate"))
    monkeypatch.setitem(sys.modules, "accelerate.utils", utils)


def _launch(**options: Any) -> types.SimpleNamespace:
    given = {"cpu": False, "use_deepspeed": False, "multi_gpu": False, "tpu": False, "gpu_ids": None}
    return types.SimpleNamespace(**{**given, "num_processes": 1, "num_machines": 1, **options})


def test_more_processes_than_named_gpus_stop_the_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    """`launch: {num_processes: 2, gpu_ids: "0"}`: accelerate's multi-GPU launcher shows each machine
    only the GPUs `gpu_ids` names and gives process i GPU i modulo their count, so two processes share
    one GPU and NCCL refuses them before the first step. The rehearsal runs one process, where nothing
    would show it: its launcher check fails the launch as the GPU box fails it. Enough GPUs named, or
    all of them (how many there are is the machine's), or `cpu`, pass."""
    _no_deepspeed(monkeypatch)
    with pytest.raises(ImportError, match="2 processes per machine on 1 visible GPU"):
        worker._launcher_check(_launch(multi_gpu=True, num_processes=2, gpu_ids="0"))
    with pytest.raises(ImportError, match="Duplicate GPU"):
        worker._launcher_check(_launch(use_fsdp=True, num_processes=4, gpu_ids="0,1"))
    worker._launcher_check(_launch(multi_gpu=True, num_processes=2, gpu_ids="0,1"))
    worker._launcher_check(_launch(multi_gpu=True, num_processes=2, gpu_ids="all"))
    worker._launcher_check(_launch(multi_gpu=True, num_processes=2))
    worker._launcher_check(_launch(multi_gpu=True, num_processes=4, num_machines=2, gpu_ids="0,1"))
    worker._launcher_check(_launch(multi_gpu=True, num_processes=2, gpu_ids="0", cpu=True))


def test_the_tpu_launcher_stops_a_stage_where_torch_xla_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """`launch: {extra: {tpu: true}}`: accelerate's TPU launcher imports torch_xla before the script
    starts; musubi-tuner's dependencies lack it, so the launch fails on the GPU box, and here."""
    import importlib.util

    _no_deepspeed(monkeypatch)
    real = importlib.util.find_spec
    installed = {"torch_xla": False}

    def find_spec(name: str, *args: Any) -> Any:
        if name == "torch_xla":
            return object() if installed["torch_xla"] else None
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match="imports torch_xla"):
        worker._launcher_check(_launch(tpu=True))
    worker._launcher_check(_launch(tpu=True, cpu=True))
    installed["torch_xla"] = True
    worker._launcher_check(_launch(tpu=True))


def test_an_errors_frames_name_musubi_tuner_and_accelerates_launch_and_nothing_else() -> None:
    """fplora reads which part of the spec was at work from the frames an error passed through:
    musubi-tuner's functions, and accelerate's launch checks (an error there names no option)."""
    scope: dict[str, Any] = {}
    source = "def {0}(then):\n    then()\n"
    for name, path in (
        ("outer", "/venv/lib/accelerate/utils/launch.py"),
        ("middle", "/venv/lib/torch/nn/module.py"),
        ("inner", "/src/musubi_tuner/fpack_train_network.py"),
    ):
        exec(compile(source.format(name), path, "exec"), scope)

    def fail() -> None:
        raise RuntimeError("no")

    try:
        scope["outer"](lambda: scope["middle"](lambda: scope["inner"](fail)))
    except RuntimeError as error:
        frames = worker._frames(error)
    assert frames == ["accelerate/utils/launch.py:outer", "musubi_tuner/fpack_train_network.py:inner"]
