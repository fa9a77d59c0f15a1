"""fplora's rehearsal worker: musubi-tuner's own entry points, run one after another in one process,
each on the exact argument list fplora renders, with tiny stand-in models (`rehearse_standins.py`).

Runs inside the musubi-tuner Python, started by `fplora rehearse` as `<python> <this file> --plan
<plan.json>`. Why one process: importing musubi-tuner's scripts costs ~11 s on a 2-core CPU, and a
rehearsal runs up to seven of them; here they are imported once. Each stage's argument list is
fplora's rendered `<python> -m accelerate.commands.launch <launch options> -m <script> <options>`
(or `<worker file> --plan ...`): accelerate's own launch parser and its launch-option validation read
the launch options, accelerate's own function sets the environment a launched script would get, and
the script (or fplora's sweep or evaluation worker file) then runs as `__main__` with its argv, as the
launched process would run it. What differs from a real launch: no new process per stage (accelerate's
state is reset between stages), one process even where the spec asks for several (said in the
output), and the models are the stand-ins.

Protocol (fplora's side: `fplora/protocol/rehearse.py`, driven by `fplora/jobs/rehearse/`):
- in: `--plan <file>`, or `--plan -` and the file's path as a line on stdin (fplora starts the
  worker while it checks the spec and writes the plan: the imports overlap that work), a JSON plan,
  `{"protocol": 1, "dit_shards": [...], "standin_cache": <folder>, "standin_loras":
  [{"source", "target"}, ...], "vae": path, "compiles": bool, "stages": [{"name", "argv", "steps"},
  ...]}` (`steps`: where a training stage stops; its config keeps the run's real length; the stand-in
  DiT's and VAE's weights are written where missing; `standin_cache`, optional: where the machine
  keeps the stand-in DiT's and VAE's files between rehearsals; `compiles`, optional: a stage uses
  torch.compile);
- out: one JSON object per line on stdout after `EVENT_PREFIX`: `started`, `stage_started`,
  `stage_done` (`code`: the script's exit code; `error`: the exception's last line, `where`: the
  innermost musubi-tuner frame, when it raised), `note`, `finished`;
- the stages run in order; a stage whose `needs` failed (non-zero exit, or none of its `outputs`
  globs written) is skipped (`stage_skipped`); fplora judges the rest and stops the process when a
  stage runs past its time limit.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import gc
import glob
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import runpy
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

PROTOCOL = 1
EVENT_PREFIX = "fplora-rehearse-event "
ACCELERATE_LAUNCH = ["-m", "accelerate.commands.launch"]
STEPS_ENV = "FPLORA_REHEARSE_STEPS"  # read by rehearse_standins' training-length seam
PROFILE_ENV = "FPLORA_REHEARSE_PROFILE"
"""A folder: each stage runs under cProfile there (`<stage>.prof`, and `<stage>.txt` with its top
functions and torch.compile's own counts and times), and `timeline.json` has the wall-clock time of
each step of the worker. For reading where a rehearsal's time goes on a machine whose console one
cannot watch (a rented GPU box: `benchmarks/rehearse_speed.py --profile`)."""


WAITS_FOR_INPUT = "it waits for keyboard input: an unattended run would wait there forever"


def _no_keyboard() -> None:
    """Stages read end-of-file from stdin: a script that asks for a key (a debug mode's `input()`)
    fails at once, instead of holding the rehearsal until its time limit."""
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (the worker's stdin until it exits)


def _missing_package(error: BaseException) -> str | None:
    """The top-level package an import failed for, when no such package is installed at all (a
    missing submodule of an installed package, such as a misspelt network module, is the spec's)."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    top = error.name.split(".")[0]
    try:
        return top if importlib.util.find_spec(top) is None else None
    except (ImportError, ValueError):
        return None


def emit(event: str, **fields: Any) -> None:
    """One event line on stdout in a single write, so that it does not interleave with log lines."""
    data = (EVENT_PREFIX + json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n").encode()
    sys.stdout.flush()
    sys.stderr.flush()
    while data:
        written = os.write(sys.stdout.fileno(), data)
        data = data[written:]


def _where(error: BaseException) -> str | None:
    """The innermost frame of musubi-tuner (or of fplora's workers) the exception passed through, as
    `file:line: source line`."""
    found = None
    for frame in traceback.extract_tb(error.__traceback__):
        name = frame.filename.replace(os.sep, "/")
        for part in ("musubi_tuner/", "fplora/worker/"):
            if f"/{part}" in name:
                found = f"{name[name.find(part) :]}:{frame.lineno}: {(frame.line or '').strip()}"
    return found


FRAME_PARTS = ("musubi_tuner/", "accelerate/commands/launch.py", "accelerate/utils/launch.py")
"""Where an error's frames tell fplora which part of the spec was at work: musubi-tuner, and
accelerate's launch (its checks of the launch options, before the script starts)."""


def _frames(error: BaseException) -> list[str]:
    """The musubi-tuner (and accelerate launch) functions the exception passed through, outermost
    first (`file:function`), for fplora to tell which part of the spec was at work."""
    found = []
    for frame in traceback.extract_tb(error.__traceback__):
        name = frame.filename.replace(os.sep, "/")
        for part in FRAME_PARTS:
            if f"/{part}" in name:
                found.append(f"{name[name.find(part) :]}:{frame.name}")
                break
    return found


def _reset_accelerate() -> None:
    """Forget the Accelerator state a previous stage made: a launched script starts with none."""
    with contextlib.suppress(Exception):
        from accelerate.state import AcceleratorState, GradientState, PartialState

        AcceleratorState._reset_state(reset_partial_state=True)
        PartialState._reset_state()
        GradientState._reset_state()


class LauncherError(ImportError):
    """accelerate's launcher for the launch options stops before the script starts."""


DISTRIBUTED = ("use_fsdp", "use_tp", "use_megatron_lm", "multi_gpu")
"""Launch options that accelerate's `launch_command` hands to its multi-GPU launcher (torch's
`distributed.run`, one process per GPU), in its order after `use_deepspeed`."""


def _launcher_check(args: Any) -> None:
    """What the launcher accelerate's `launch_command` picks for these options (in its order: `cpu`
    takes the simple launcher whatever else is set) does before the script starts, or makes certain
    to fail, where the rehearsal runs the script itself in one process instead:
    - its DeepSpeed launcher (`use_deepspeed`) stops with an ImportError where the package deepspeed
      is missing, on the GPU box as here (musubi-tuner's dependencies do not include it);
    - its multi-GPU launcher (`DISTRIBUTED`) limits each machine's processes to the GPUs `gpu_ids`
      names (CUDA_VISIBLE_DEVICES); accelerate gives process i GPU i modulo the visible count, so
      more processes than named GPUs put two on one GPU, which NCCL refuses when the first
      collective builds its communicator (`Duplicate GPU detected`), before the first step;
    - its TPU launcher (`tpu`) first imports torch_xla, which musubi-tuner's dependencies lack.
    The simple launcher starts the script (one process here, see `_launch_args`)."""
    from accelerate.utils import is_deepspeed_available

    if getattr(args, "cpu", False):
        return
    if getattr(args, "use_deepspeed", False):
        if not is_deepspeed_available():
            raise LauncherError(
                "accelerate launch --use_deepspeed: its DeepSpeed launcher needs the package deepspeed,"
                " which this musubi-tuner Python lacks"
            )
        return
    if any(getattr(args, name, False) for name in DISTRIBUTED):
        ids = str(getattr(args, "gpu_ids", None) or "all")
        machines = max(int(getattr(args, "num_machines", None) or 1), 1)
        per_machine = int(getattr(args, "num_processes", None) or 1) // machines
        named = [part for part in ids.split(",") if part.strip()]
        if ids != "all" and len(named) < per_machine:
            raise LauncherError(
                f"accelerate launch --gpu_ids {ids}: {per_machine} processes per machine on"
                f" {len(named)} visible GPU{'s' if len(named) != 1 else ''} (CUDA_VISIBLE_DEVICES={ids}):"
                " accelerate puts two processes on one GPU, and NCCL refuses that (Duplicate GPU"
                " detected) before the first step"
            )
        return
    if getattr(args, "tpu", False) and importlib.util.find_spec("torch_xla") is None:
        raise LauncherError(
            "accelerate launch --tpu: its TPU launcher imports torch_xla, which this musubi-tuner Python"
            " lacks (musubi-tuner trains on CUDA GPUs)"
        )


def _launch_args(argv: list[str]) -> tuple[Any, dict[str, str]]:
    """accelerate's own reading of the launch options: its parser, its validation (which also reads
    a user's default config file, as a real launch would), the checks of the launcher it would pick
    (`_launcher_check`) and the environment its simple launcher gives the launched script."""
    from accelerate.commands.launch import (
        _validate_launch_command,
        launch_command_parser,
        prepare_simple_launcher_cmd_env,
    )

    args = launch_command_parser().parse_args(argv)
    args, _defaults, _mixed = _validate_launch_command(args)
    _launcher_check(args)
    processes = int(args.num_processes or 1)
    if processes > 1 or args.multi_gpu:
        emit("note", text=f"{processes} processes asked for: rehearsed in one process")
        args.multi_gpu, args.num_processes = False, 1
    _cmd, env = prepare_simple_launcher_cmd_env(args)
    return args, env


def run_stage(argv: list[str], steps: int | None = None) -> tuple[int, str | None, str | None, list[str]]:
    """Run one rendered command in this process: (exit code, error line, where it was raised).
    `steps`: the optimizer steps a training stage stops after (`rehearse_standins.STEPS_ENV`)."""
    if argv[1:3] != ACCELERATE_LAUNCH:
        return 2, f"not an accelerate launch: {argv[:3]}", None, []
    saved_env, saved_argv = dict(os.environ), list(sys.argv)
    try:
        args, env = _launch_args(argv[3:])
        os.environ.update({k: v for k, v in env.items() if isinstance(v, str)})
        if steps is not None:
            os.environ[STEPS_ENV] = str(steps)
        sys.argv = [args.training_script, *args.training_script_args]
        if args.module:
            runpy.run_module(args.training_script, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(args.training_script, run_name="__main__")
        return 0, None, None, []
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        message = None if isinstance(stop.code, int) or stop.code is None else str(stop.code)
        return code, message, None, []
    except Exception as error:  # the script's failure is the stage's result, not the worker's
        traceback.print_exc()
        line = traceback.format_exception_only(type(error), error)[-1].strip()
        if isinstance(error, EOFError):
            line += f" ({WAITS_FOR_INPUT})"
        elif (package := _missing_package(error)) is not None:
            line += f" (the package {package} is not installed in this musubi-tuner Python)"
        return 1, line, _where(error), _frames(error)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        _reset_accelerate()


def _standin_key(standins: Any, modules: list[str], names: list[str]) -> str:
    """What a stand-in model's files depend on: fplora's stand-in code, the source of musubi-tuner's
    modules that define the model (its class, its config), the torch version (its serialisation and
    random numbers) and the file names."""
    digest = hashlib.sha256(Path(standins.__file__).read_bytes())
    for name in modules:
        try:
            module = importlib.util.find_spec(name)
        except ImportError:  # no musubi-tuner: the stand-in cannot run either; made, not reused
            module = None
        digest.update(Path(module.origin).read_bytes() if module and module.origin else b"-")
    try:
        torch = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch = "-"
    digest.update(json.dumps([torch, names]).encode())
    return digest.hexdigest()[:20]


DIT_MODULES = ["musubi_tuner.frame_pack.hunyuan_video_packed"]
VAE_MODULES = ["musubi_tuner.hunyuan_model.vae", "musubi_tuner.hunyuan_model.autoencoder_kl_causal_3d"]
"""musubi-tuner's modules that define each stand-in's files: the class, and (the VAE's) its config."""


def _kept_per_machine(files: list[Path], kept: Path | None, make: Any) -> None:
    """`files` copied from the machine's cache folder `kept` when a rehearsal made them before, else
    made by `make()` and kept there for the next spec (whole or not at all, also with two rehearsals
    at once). Without a usable cache folder (a read-only home) they are made each time."""
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
    if kept is None or not all((kept / p.name).is_file() for p in files):
        make()
        if kept is not None:
            part = kept.with_name(f"{kept.name}.{os.getpid()}.part")
            try:
                part.mkdir(parents=True)
                for path in files:
                    shutil.copyfile(path, part / path.name)
                os.replace(part, kept)
            except OSError:  # no cache, or another rehearsal made it first
                shutil.rmtree(part, ignore_errors=True)
        return
    for path in files:
        shutil.copyfile(kept / path.name, path)


def _stand_in_dit(standins: Any, shards: list[Path], cache: Path | None) -> None:
    """The stand-in DiT's shards at `shards`: copied from the machine's cache (`cache`, per user) when
    one was made before for the same stand-in, else made (~1 s) and kept there for the next spec."""
    key = _standin_key(standins, DIT_MODULES, [p.name for p in shards])
    _kept_per_machine(
        shards,
        cache / f"dit-{key}" if cache else None,
        lambda: standins.write_dit([str(p) for p in shards]),
    )


def _stand_in_vae(standins: Any, vae: Path, cache: Path | None) -> None:
    """The stand-in VAE's weights at `vae`, kept per machine as the DiT's: made, they cost building
    HunyuanVideo's VAE class and saving it (and importing its module before the first stage, which
    caching imports anyway) in every rehearsal."""
    key = _standin_key(standins, VAE_MODULES, [vae.name])
    _kept_per_machine([vae], cache / f"vae-{key}" if cache else None, lambda: standins.write_vae(str(vae)))


class _Timeline:
    """The worker's steps with their wall-clock times, written with the profiles (`PROFILE_ENV`)."""

    def __init__(self, folder: str | None) -> None:
        self.folder = Path(folder) if folder else None
        self.marks: list[tuple[str, float]] = []
        self.mark("main")

    def mark(self, what: str) -> None:
        if self.folder is not None:
            self.marks.append((what, time.time()))
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "timeline.json").write_text(json.dumps(self.marks, indent=1) + "\n")

    def run(self, name: str, call: Any) -> Any:
        """`call()`, under cProfile when profiling: its stats, and torch.compile's counters and
        times (the graphs it traced, the recompiles and why) once torch's compiler was used."""
        if self.folder is None:
            return call()
        import cProfile
        import io
        import pstats

        profile = cProfile.Profile()
        try:
            return profile.runcall(call)
        finally:
            profile.dump_stats(str(self.folder / f"{name}.prof"))
            text = io.StringIO()
            stats = pstats.Stats(profile, stream=text)
            stats.sort_stats("cumulative").print_stats(80)
            stats.sort_stats("tottime").print_stats(40)
            dynamo = sys.modules.get("torch._dynamo.utils")
            if dynamo is not None:
                with contextlib.suppress(Exception):
                    text.write(f"\ntorch.compile counters: {json.dumps(dynamo.counters, default=str)}\n")
                    text.write(str(dynamo.compile_times(repr="str", aggregate=True)) + "\n")
            (self.folder / f"{name}.txt").write_text(text.getvalue(), encoding="utf-8")


def warm_compile_workers(torch: Any) -> bool:
    """On a GPU, start inductor's compile worker processes now, when a stage will compile: torch
    starts them at the first compile (the training stage's sampling), and until they are up (each
    imports torch) the first graphs' kernels are built or loaded one by one in this process, while
    the workers' start competes with the tracing for the CPU. Started here, they come up while the
    caching stages run. The same pool torch would use, only earlier (`maybe_warm_pool` is torch's
    own start, which honours TORCH_WARM_POOL and TORCHINDUCTOR_COMPILE_THREADS); nothing to do
    without CUDA, where the stand-ins leave the compile out. True when it was started; a torch
    without this function, or a start that fails, leaves it to torch at the first compile (where a
    failure then belongs to the stage that compiles)."""
    if not torch.cuda.is_available():
        return False
    try:
        from torch._inductor.async_compile import maybe_warm_pool

        maybe_warm_pool()
    except Exception:
        return False
    return True


def spare_cudnn_attention(torch: Any) -> bool:
    """On a GPU, keep `scaled_dot_product_attention` off cuDNN's kernels for the rehearsal. torch
    2.11 sends the stand-ins' bf16 attention to cuDNN on an H100, and cuDNN builds an execution plan
    at every new shape: ~50-130 ms per first call (benchmarks/sdpa_first_call.py), once per shape
    over a real run's hours, but at every caption length and latent size a rehearsal meets, which
    it meets once each. The flash and memory-efficient kernels take the same call with the same
    arguments and need no plan: the rehearsal runs the same code path ~0.9 s sooner (the example on
    one H100, twice in one call: docs/rehearsal.md). Which attention kernel the real run's torch
    picks is the GPU's own matter, which a rehearsal on stand-ins does not judge. False without
    CUDA (the CPU's attention has no cuDNN kernel) or where this torch has no such switch."""
    if not torch.cuda.is_available():
        return False
    switch = getattr(torch.backends.cuda, "enable_cudnn_sdp", None)
    if switch is None:
        return False
    switch(False)
    return True


def warm_gpu(torch: Any) -> threading.Thread | None:
    """On a GPU, a thread that pays CUDA's first-use costs while this process imports musubi-tuner's
    modules and makes the stand-ins: the device's context, cuBLAS, cuDNN and the attention kernels
    the stages run first (CUDA loads each kernel at its first launch; on an H100 the first
    scaled_dot_product_attention calls cost caching ~0.5 s and the training stage ~1 s). torch
    releases the interpreter lock inside each operation, so the loading overlaps the imports. The
    kernels are those of the stand-ins' shapes: the VAE's fp16 attention (one head of 32 channels,
    a float mask), the DiT's bf16 attention (one head of 128 channels: its token refiner's with a
    mask, its blocks' without, forward and backward), a bf16 linear layer and an fp16 3-D
    convolution. Nothing the stages compute changes (zeros in, nothing kept, no random numbers
    drawn), and a failure here is left to the stage that meets it. None without CUDA. The worker
    joins it before the first stage, so that no stage runs beside it."""
    if not torch.cuda.is_available():
        return None

    def warm() -> None:
        with contextlib.suppress(Exception):
            index = torch.cuda.current_device()  # the device the stages' `cuda` means
            device = torch.device("cuda", index)
            attention = torch.nn.functional.scaled_dot_product_attention
            half, bf16 = torch.float16, torch.bfloat16
            with torch.no_grad():
                q = torch.zeros(1, 1, 96, 32, device=device, dtype=half)
                attention(q, q, q, attn_mask=torch.zeros(1, 96, 96, device=device, dtype=half))
                image = torch.zeros(1, 16, 3, 16, 16, device=device, dtype=half)
                torch.nn.functional.conv3d(image, torch.zeros(16, 16, 3, 3, 3, device=device, dtype=half))
                q = torch.zeros(1, 1, 24, 128, device=device, dtype=bf16)  # the caption's tokens
                attention(q, q, q, attn_mask=torch.ones(1, 1, 24, 24, device=device, dtype=torch.bool))
            for tokens in (112, 144):  # the stand-in's image and text tokens, below and above 128
                q = torch.zeros(1, 1, tokens, 128, device=device, dtype=bf16, requires_grad=True)
                attention(q, q, q).sum().backward()
            w = torch.zeros(128, 128, device=device, dtype=bf16, requires_grad=True)
            torch.nn.functional.linear(w, w).sum().backward()
            torch.cuda.synchronize(device)

    thread = threading.Thread(target=warm, name="fplora-warm-gpu", daemon=True)
    thread.start()
    return thread


UNUSED_PACKAGES = ("sklearn",)
"""Packages a musubi-tuner script imports only by way of another package and never calls: transformers'
generation utilities import scikit-learn when it is installed (for assisted decoding, which
musubi-tuner does not use), ~1.7 s of a GPU rehearsal's caching stage on the GPU image. Hidden from
the worker, transformers takes them as not installed; musubi-tuner's own code path is unchanged."""


def hide_unused_packages() -> None:
    """Make `UNUSED_PACKAGES` look absent in this process (`None` in `sys.modules`: importing them
    raises ImportError, and `importlib.util.find_spec` answers None, which is what transformers asks)."""
    for name in UNUSED_PACKAGES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def script_imports(argv: list[str]) -> list[tuple[str, str | None]]:
    """What a stage's script imports at its top level (not inside its functions, which may be
    optional packages the spec never reaches), in order, read from its source (not run): `(module,
    None)` for `import module`, `(module, name)` for `from module import name`. Only a script
    launched as a module (`-m`, musubi-tuner's); [] where it cannot be read."""
    if argv[1:3] != ACCELERATE_LAUNCH:
        return []
    try:
        from accelerate.commands.launch import launch_command_parser

        args = launch_command_parser().parse_args(argv[3:])
        found = importlib.util.find_spec(args.training_script) if args.module else None
        if found is None or not found.origin:
            return []
        tree = ast.parse(Path(found.origin).read_bytes())
    except (Exception, SystemExit):  # the stage itself meets and reports whatever went wrong here
        return []
    names: list[tuple[str, str | None]] = []
    nodes = list(tree.body)
    while nodes:  # the module's own statements and those under its top-level `try:`/`if`, in order
        node = nodes.pop(0)
        if isinstance(node, ast.Import):
            names += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, (ast.Try, ast.If)):
            nodes[:0] = node.body
    return list(dict.fromkeys(names))


def _import_one(module: str, name: str | None) -> None:
    """`import module` or `from module import name` (a name in the module, which may load it lazily,
    as transformers' classes do, or a submodule)."""
    loaded = importlib.import_module(module)
    if name is not None and name != "*":
        try:
            getattr(loaded, name)
        except AttributeError:
            importlib.import_module(f"{module}.{name}")


def import_ahead(stages: list[dict[str, Any]], warming: threading.Thread) -> int:
    """While the GPU warms (`warm_gpu`'s thread, ~1.3 s on an H100 after the stand-ins are made, a
    wait on the first stage's path), import what the stages' scripts will import, first stage first,
    and stop as soon as the GPU is warm: the same modules, with the same stand-in patches (the
    worker's import hook), imported earlier instead of inside the stages. A module that fails to
    import is left for its stage, which meets the same failure and reports it. The count of import
    statements done ahead."""
    done = 0
    for stage in stages:
        for module, name in script_imports(stage["argv"]):
            if not warming.is_alive():
                return done
            try:
                _import_one(module, name)
                done += 1
            except (Exception, SystemExit):
                continue
    return done


def _read_plan(path: str) -> dict[str, Any] | None:
    """The plan at `path`, or None (said as an `error` event) when this worker does not speak its
    protocol."""
    plan: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    if plan.get("protocol") != PROTOCOL:
        emit("error", error=f"plan protocol {plan.get('protocol')}, this worker speaks {PROTOCOL}")
        return None
    return plan


def main() -> int:
    parser = argparse.ArgumentParser(description="fplora's rehearsal worker")
    parser.add_argument(
        "--plan",
        required=True,
        help="the plan file; `-`: its path comes on stdin, once fplora has written it (this worker"
        " starts up meanwhile; end-of-file instead: no rehearsal after all, and it leaves)",
    )
    options = parser.parse_args()
    waits = options.plan == "-"
    plan = None if waits else _read_plan(options.plan)
    if plan is None and not waits:
        return 2
    timeline = _Timeline(os.environ.get(PROFILE_ENV))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    hide_unused_packages()
    import rehearse_standins

    rehearse_standins.install()
    timeline.mark("torch imported, stand-ins installed")
    import torch

    spare_cudnn_attention(torch)  # before the warm-up, which then warms the kernels the stages use
    warming = warm_gpu(torch)
    if plan is None:
        given = sys.stdin.readline().strip()
        if not given:
            return 0  # fplora stopped before rehearsing (the spec had errors): nothing to say
        plan = _read_plan(given)
        if plan is None:
            return 2
        timeline.mark("plan given")
    _no_keyboard()
    emit("started", pid=os.getpid())
    missing = [m for m in ("flash_attn", "sageattention", "xformers") if importlib.util.find_spec(m) is None]
    emit("kernels", missing=missing, cuda=torch.cuda.is_available())
    timeline.mark("CUDA asked")
    if plan.get("compiles") and warm_compile_workers(torch):
        timeline.mark("compile workers started")
    kept = Path(plan["standin_cache"]) if plan.get("standin_cache") else None
    shards = [Path(p) for p in plan.get("dit_shards", [])]
    if shards and not all(p.is_file() for p in shards):
        _stand_in_dit(rehearse_standins, shards, kept)
    for lora in plan.get("standin_loras", []):  # the spec's LoRA files, for the stand-in DiT
        rehearse_standins.write_lora(lora["source"], lora["target"], [str(p) for p in shards])
    vae = Path(plan["vae"]) if plan.get("vae") else None
    if vae is not None and (not vae.is_file() or vae.stat().st_size == 0):
        _stand_in_vae(rehearse_standins, vae, kept)
    timeline.mark("stand-in models ready")
    if warming is not None:
        imported = import_ahead(plan["stages"], warming)
        timeline.mark(f"{imported} of the stages' imports done ahead")
        warming.join()
        timeline.mark("GPU warmed")
    failed: set[str] = set()
    for stage in plan["stages"]:
        blocked = [name for name in stage.get("needs", []) if name in failed]
        if blocked:
            failed.add(stage["name"])
            emit("stage_skipped", stage=stage["name"], blocked=blocked)
            continue
        emit("stage_started", stage=stage["name"])
        # musubi-tuner calls gc.collect() many times per script; with torch and its compiler imported
        # each call walks millions of long-lived objects (~0.8 s on a 2-core CPU). Frozen, they are
        # skipped: the same collections, without rescanning what can never be garbage yet
        gc.freeze()
        started = time.monotonic()
        code, error, where, frames = timeline.run(
            stage["name"], functools.partial(run_stage, stage["argv"], stage.get("steps"))
        )
        timeline.mark(f"{stage['name']} done")
        outputs = stage.get("outputs", [])
        if code != 0 or (outputs and not any(glob.glob(pattern) for pattern in outputs)):
            failed.add(stage["name"])
        emit(
            "stage_done",
            stage=stage["name"],
            code=code,
            error=error,
            where=where,
            frames=frames,
            seconds=round(time.monotonic() - started, 2),
        )
    emit("finished")
    return 0


def end_compile_workers(async_compile: Any) -> None:
    """End inductor's compile sidecars and their worker processes at once (SIGKILL), and reap the
    sidecars: they hold nothing a finished rehearsal needs (each compile was done before the stage
    that asked for it went on), and torch's own shutdown lets every worker tear its torch down in
    turn first, ~1 s of the worker's exit with the 2 workers of a 2-core CPU (a GPU box starts one
    per core), all of it before fplora sees the worker's output end. Killed: ~0.07 s. A torch whose
    pools are not what this expects (`_pool_set` of pools with a sidecar `process`) is shut down
    its own way."""
    try:
        import psutil

        pools = list(async_compile._pool_set)
        sidecars = [pool.process for pool in pools]
        for pool in pools:
            pool.running = False  # as torch's shutdown says: its reader thread then ends without a warning
        for sidecar in sidecars:
            with contextlib.suppress(psutil.Error):
                for worker in psutil.Process(sidecar.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        worker.kill()
            sidecar.kill()
            sidecar.wait()
    except Exception:
        with contextlib.suppress(Exception):
            async_compile.shutdown_compile_workers()


def leave(code: int) -> None:
    """Exit as soon as the last event is out, without the interpreter's teardown: the stages'
    results are on disk and reported, and what is left of them (the data loaders' worker processes,
    torch's compile workers, CUDA, tens of thousands of modules' objects) only needs the process to
    end. Python's own exit spent ~0.3 s of a 2-core CPU rehearsal here (more where CUDA and a pool of
    compile workers are up). Threads still working are waited for as Python waits for them, and the
    worker's own children (a data loader's persistent workers, inductor's compile sidecar and its
    workers: `end_compile_workers`) are stopped first, so that none outlives the rehearsal."""
    sys.stdout.flush()
    sys.stderr.flush()
    threading._shutdown()  # type: ignore[attr-defined]  # Python's first exit step: joins threads
    if "torch._inductor.async_compile" in sys.modules:  # its sidecar and workers, when started
        end_compile_workers(sys.modules["torch._inductor.async_compile"])
    if "multiprocessing" in sys.modules:
        import multiprocessing

        children = multiprocessing.active_children()
        for child in children:
            child.terminate()
        for child in children:
            child.join(5)
    os._exit(code)


if __name__ == "__main__":
    leave(main())
