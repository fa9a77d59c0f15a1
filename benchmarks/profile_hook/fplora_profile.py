"""torch.profiler around one steady optimizer step of musubi-tuner's training, injected from outside.

Why: issue 21 asks what a compiled training step spends its time on (attention kernel, GEMMs, the
optimizer step, data loading, host syncs) before choosing which lever to try. musubi-tuner is not
edited: fplora starts it as `accelerate launch ... fpack_train_network`, and the launcher starts the
training script in a new Python, so the environment is the only way in. With this folder first on
PYTHONPATH, every Python imports its `sitecustomize.py` at start-up, which imports this module and
calls `install()` only when FPLORA_PROFILE_OUT is set (benchmarks/preset_speed.py's `profile-<variant>`
stages set it on the training command only).

The seam is torch's own wrapper of every optimizer's `step` (`Optimizer.profile_hook_step`, which
each optimizer class gets when its first instance is made, bitsandbytes' included), wrapped once more
when torch imports `torch.optim.optimizer`: after each `step()` returns, outside the `Optimizer.step#`
record_function (torch's global post hooks run inside it, which would cut the profiler's window
across that range and lose the optimizer's ops from it). accelerate's wrapped optimizer steps the real
one only when gradients sync, so this runs once per optimizer step (once per 16 micro-batches at
batch 1 x 16), whatever musubi-tuner's loop looks like around it. The profiler starts right after step
N-1's `optimizer.step()` and stops right after step N's, each edge behind a `torch.cuda.synchronize()`:
the window is one whole cycle (step N-1's scheduler step, zero_grad, loss `.item()` and logging; step
N's micro-batches, backward passes and optimizer step). Nothing is imported here up front, so the
fplora CLI and accelerate's launcher stay as they were.

Written into FPLORA_PROFILE_OUT (read by benchmarks/harness/profile_table.py, stdlib only):
- `profile-raw.json`: torch's key_averages rows; the window's wall time; the "work" (each GPU
  kernel's time, or on a CPU-only run each op's self CPU time) by name, the op that launched it and
  its scope (optimizer step, data loading, backward); the GPU's busy time and idle gaps in the
  window, with the host op that was running in the longest gaps;
- `trace.json.gz`: the chrome trace, gzipped, when FPLORA_PROFILE_TRACE (MB, default 0: none) allows
  its size; dropped (and said so in the raw export) when larger.

Environment: FPLORA_PROFILE_OUT (folder), FPLORA_PROFILE_STEP (the optimizer step profiled, >= 2,
default 3), FPLORA_PROFILE_TRACE (see above). The first window that completes in a process is written;
a later optimizer in the same process (a rehearsal's resume stage) is not profiled.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time
from typing import Any

OUT_ENV = "FPLORA_PROFILE_OUT"
STEP_ENV = "FPLORA_PROFILE_STEP"
TRACE_ENV = "FPLORA_PROFILE_TRACE"
WINDOW = "fplora_profile::window"  # a record_function spanning the window, for its place in the trace
RAW = "profile-raw.json"
TRACE = "trace.json.gz"
PROTOCOL = 2  # 2: the device side of record_function ranges is no longer counted as GPU work
TARGET = "torch.optim.optimizer"
TOP_GAPS = 10

_state: dict[str, Any] = {"steps": {}, "owner": None, "done": False}


def _say(text: str) -> None:
    print(f"fplora-profile: {text}", file=sys.stderr, flush=True)


def _after_step(optimizer: Any) -> None:
    """After every `optimizer.step()` has returned: start before step N, stop after it."""
    if _state["done"]:
        return
    key = id(optimizer)
    count = _state["steps"][key] = _state["steps"].get(key, 0) + 1
    step = _state["step"]
    try:
        if _state["owner"] is None and count == step - 1:
            _start(key)
        elif _state["owner"] == key and count == step:
            _stop(step)
    except Exception as error:  # the training run must go on: the export says what failed
        _state["done"] = True
        _say(f"profiling failed: {type(error).__name__}: {error}")


def _start(key: int) -> None:
    import torch

    cuda = torch.cuda.is_available()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    prof = torch.profiler.profile(activities=activities, record_shapes=False, with_stack=False)
    prof.start()
    window = torch.profiler.record_function(WINDOW)
    window.__enter__()
    _state.update(owner=key, prof=prof, window=window, cuda=cuda, t0=time.perf_counter())
    _say(f"profiling optimizer step {_state['step']} ({'CPU + CUDA' if cuda else 'CPU only'})")


def _stop(step: int) -> None:
    import torch

    if _state["cuda"]:
        torch.cuda.synchronize()
    wall = time.perf_counter() - _state["t0"]
    _state["window"].__exit__(None, None, None)
    prof = _state["prof"]
    prof.stop()
    _state["done"] = True
    t0 = time.perf_counter()
    raw = _export(prof, step, wall, _state["cuda"])
    out = os.environ[OUT_ENV]
    os.makedirs(out, exist_ok=True)
    raw["export_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    raw["trace"] = _trace(prof, out)
    raw["trace_s"] = round(time.perf_counter() - t0, 2)
    _write_json(os.path.join(out, RAW), raw)
    _say(f"step {step}: {wall:.3f} s profiled; table {raw['export_s']} s, trace {raw['trace_s']} s; in {out}")


def _write_json(path: str, data: Any) -> None:
    import json

    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=0)
    os.replace(tmp, path)


def _num(evt: Any, *names: str) -> float:
    """An attribute under its current or its older name (torch renamed cuda_* to device_* in 2.4)."""
    for name in names:
        value = getattr(evt, name, None)
        if value is not None:
            return round(float(value), 3)
    return 0.0


def _scope(evt: Any) -> str:
    """Which part of the cycle an op belongs to, from the record_functions and autograd nodes above it."""
    found = ""
    node = evt
    while node is not None:
        name = node.name
        if name.startswith(("Optimizer.step#", "Optimizer.zero_grad#")):
            return "optimizer"
        if "DataLoader" in name:
            return "data"
        if name.startswith(("autograd::engine::evaluate_function", "CompiledFunctionBackward")):
            found = "backward"
        node = node.cpu_parent
    return found


def _export(prof: Any, step: int, wall: float, cuda: bool) -> dict[str, Any]:
    import torch
    from torch.autograd import DeviceType

    rows = []
    for avg in prof.key_averages():
        rows.append(
            {
                "name": avg.key,
                "device_type": str(avg.device_type).rsplit(".", 1)[-1],
                "count": int(avg.count),
                "self_cpu_us": _num(avg, "self_cpu_time_total"),
                "cpu_total_us": _num(avg, "cpu_time_total"),
                "self_device_us": _num(avg, "self_device_time_total", "self_cuda_time_total"),
                "device_total_us": _num(avg, "device_time_total", "cuda_time_total"),
            }
        )
    events = prof.events()
    window = next((e for e in events if e.name == WINDOW), None)
    work: dict[tuple[str, str, str], list[float]] = {}
    host: list[Any] = []
    device: list[tuple[float, float, str]] = []
    # a record_function range (the window, the optimizer step) has a device-side twin of the same name
    # spanning the kernels it launched: an annotation, not work (protocol 1 counted the window as busy)
    ranges = {e.name for e in events if e.device_type == DeviceType.CPU}
    for evt in events:
        if evt.device_type != DeviceType.CPU and (
            evt.name in ranges or getattr(evt, "is_user_annotation", False)
        ):
            continue
        if evt.device_type == DeviceType.CPU:
            if evt.is_async:
                continue
            host.append(evt)
            if cuda:
                for kernel in evt.kernels:
                    slot = work.setdefault((kernel.name, evt.name, _scope(evt)), [0, 0.0])
                    slot[0] += 1
                    slot[1] += kernel.duration
            elif evt.self_cpu_time_total > 0:
                parent = evt.cpu_parent.name if evt.cpu_parent is not None else ""
                slot = work.setdefault((evt.name, parent, _scope(evt)), [0, 0.0])
                slot[0] += 1
                slot[1] += evt.self_cpu_time_total
        else:
            device.append((evt.time_range.start, evt.time_range.end, evt.name))
    if cuda:
        _unlinked(work, device)
    raw: dict[str, Any] = {
        "protocol": PROTOCOL,
        "step": step,
        "window_s": round(wall, 4),
        "basis": "device" if cuda else "cpu",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "events": len(events),
        "rows": rows,
        "work": [
            {"name": n, "launcher": launcher, "scope": scope, "count": c, "us": round(us, 3)}
            for (n, launcher, scope), (c, us) in sorted(work.items(), key=lambda kv: -kv[1][1])
        ],
    }
    if window is not None and device:
        raw["gpu"] = _timeline(window.time_range.start, window.time_range.end, device, host)
    return raw


def _unlinked(work: dict[tuple[str, str, str], list[float]], device: list[tuple[float, float, str]]) -> None:
    """Device work that torch linked to no host op (a launch outside any recorded op) still counts:
    what the device events hold beyond the kernels attached to host ops, under `(no host op)`."""
    seen: dict[str, list[float]] = {}
    for start, end, name in device:
        slot = seen.setdefault(name, [0, 0.0])
        slot[0] += 1
        slot[1] += end - start
    for (name, _, _), (count, us) in list(work.items()):
        if name in seen:
            seen[name][0] -= count
            seen[name][1] -= us
    for name, (count, us) in seen.items():
        if count > 0 and us > 0:
            work[(name, "(no host op)", "")] = [count, us]


def _timeline(
    start: float, end: float, device: list[tuple[float, float, str]], host: list[Any]
) -> dict[str, Any]:
    """The GPU's busy time in the window (the union of every kernel, copy and set on any stream) and
    its idle gaps: counted by size, and the longest with the kernels around them and the host op that
    was running meanwhile (a sync, the data loader, Python between launches)."""
    spans = sorted((max(s, start), min(e, end), n) for s, e, n in device if e > start and s < end)
    busy = 0.0
    gaps: list[tuple[float, float, str, str]] = []
    cursor, last = start, "(window start)"
    for s, e, name in spans:
        if s > cursor:
            gaps.append((cursor, s - cursor, last, name))
        if e > cursor:
            busy += e - max(s, cursor)
            cursor, last = e, name
    if end > cursor:
        gaps.append((cursor, end - cursor, last, "(window end)"))
    buckets = {"10us": 10.0, "100us": 100.0, "1ms": 1000.0, "10ms": 10000.0}
    sizes = {
        f">={label}": {
            "count": sum(1 for g in gaps if g[1] >= floor),
            "us": round(sum(g[1] for g in gaps if g[1] >= floor), 1),
        }
        for label, floor in buckets.items()
    }
    longest = []
    for at, length, before, after in sorted(gaps, key=lambda g: -g[1])[:TOP_GAPS]:
        middle = at + length / 2
        during = [h for h in host if h.time_range.start <= middle <= h.time_range.end and h.name != WINDOW]
        innermost = min(during, key=lambda h: h.time_range.end - h.time_range.start, default=None)
        outer = [h.name for h in sorted(during, key=lambda h: h.time_range.start)][:4]
        longest.append(
            {
                "at_us": round(at - start, 1),
                "us": round(length, 1),
                "after_kernel": before,
                "before_kernel": after,
                "host_op": innermost.name if innermost is not None else "",
                "host_stack": outer,
            }
        )
    return {
        "window_us": round(end - start, 1),
        "busy_us": round(busy, 1),
        "kernels": len(spans),
        "gaps": sizes,
        "longest_gaps": longest,
    }


def _trace(prof: Any, out: str) -> dict[str, Any]:
    """The chrome trace, gzipped, if FPLORA_PROFILE_TRACE's megabytes allow it."""
    import gzip
    import shutil

    limit = float(os.environ.get(TRACE_ENV) or 0)
    if limit <= 0:
        return {"written": False, "why": f"{TRACE_ENV} not set"}
    plain = os.path.join(out, "trace.json")
    packed = os.path.join(out, TRACE)
    prof.export_chrome_trace(plain)
    with open(plain, "rb") as src, gzip.open(packed, "wb", compresslevel=5) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    plain_mb = os.path.getsize(plain) / 1e6
    os.remove(plain)
    mb = os.path.getsize(packed) / 1e6
    if mb > limit:
        os.remove(packed)
        return {"written": False, "why": f"{mb:.1f} MB gzipped > {limit:g} MB", "json_mb": round(plain_mb, 1)}
    return {"written": True, "file": TRACE, "mb": round(mb, 2), "json_mb": round(plain_mb, 1)}


def _hook(module: Any) -> None:
    """torch.optim.optimizer's `Optimizer.profile_hook_step`, wrapped: `_after_step` once the step is done."""
    import functools

    wrap = module.Optimizer.profile_hook_step

    def profile_hook_step(func: Any) -> Any:
        hooked = wrap(func)

        @functools.wraps(hooked)
        def step(*args: Any, **kwargs: Any) -> Any:
            out = hooked(*args, **kwargs)
            _after_step(args[0])
            return out

        return step

    module.Optimizer.profile_hook_step = staticmethod(profile_hook_step)


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the optimizers' step as torch.optim.optimizer is first imported (torch imports it itself)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != TARGET:
            return None
        sys.meta_path.remove(self)  # the other finders find it; this one only wraps what they return
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_hook(module: Any) -> None:
            exec_module(module)
            _hook(module)

        spec.loader.exec_module = exec_and_hook  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Wrap the optimizers' step as torch.optim.optimizer is imported (now, if it already is)."""
    step = int(os.environ.get(STEP_ENV) or 3)
    if step < 2:
        _say(f"{STEP_ENV}={step}: the window starts after step N-1, so N must be >= 2; not profiling")
        return
    _state["step"] = step
    if TARGET in sys.modules:  # optimizers made before this point are not seen
        _hook(sys.modules[TARGET])
    else:
        sys.meta_path.insert(0, _Finder())
