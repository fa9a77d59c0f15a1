"""The profiler's table of one optimizer step: where its time went, grouped by the lever each group
points to (issue 21: attention kernel, GEMMs, optimizer step, elementwise/norm, copies, idle GPU and
host syncs, data loading).

Pure and stdlib-only: `summarise(raw)` reads the export that benchmarks/profile_hook/sitecustomize.py
writes in the training process (`profile-raw.json`) and returns the table as a dict; `render(table)`
gives it as text. Both run on the machine that reads the results, so a table can be redone from a
returned export without the GPU:

    python3 benchmarks/harness/profile_table.py profile-raw.json       # or a returned profile-*.json

On a GPU run the basis is each kernel's device time; on a CPU-only run (the plumbing's proof) it is
each op's self CPU time, grouped by the same rules.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TOP = 30
ATTENTION = ("flash", "fmha", "attention", "sdpa", "scaled_dot_product", "sage", "xformers")
GEMM_KERNELS = ("gemm", "xmma", "nvjet", "cutlass", "cublas", "triton_tem", "matmul", "splitk", "wgmma")
GEMM_OPS = {
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::matmul",
    "aten::linear",
    "aten::_scaled_mm",
    "aten::_addmm_activation",
}
COPIES = {"aten::copy_", "aten::_to_copy", "aten::to", "aten::contiguous", "aten::clone"}
# host calls that wait for the GPU (or make the host wait for a value from it)
SYNCS = (
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
    "cudaEventSynchronize",
    "cudaStreamWaitEvent",
    "cudaMemcpy",
    "aten::item",
    "aten::_local_scalar_dense",
    "aten::nonzero",
)
LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")
GROUPS = ("attention", "gemm", "optimizer", "elementwise_norm", "memcpy", "data", "other")
LEVERS = {
    "attention": "the attention kernel: flash-attn 2/3 or cuDNN SDPA against PyTorch's flash backend "
    "(`train.attention`); split_attn off removes the caption padding's tokens from it",
    "gemm": "the model's own FLOPs (the linears): only less work (split_attn's padding, the zero 2x/4x "
    "history latents) or faster math (fp8 matmuls, compile_mode max-autotune's GEMM templates) moves it",
    "optimizer": "the optimizer step (once per 16 micro-batches): adamw8bit's one kernel per LoRA tensor; "
    "a fused/foreach AdamW, or fewer, larger LoRA tensors",
    "elementwise_norm": "fused elementwise/norm/rope kernels (compile's triton_* and eager's rest): more of "
    "the step under compile (the LoRA's modules), compile_mode max-autotune",
    "memcpy": "host<->device copies: the batch's upload (pinned memory, data loader workers), block swap",
    "data": "data loading on the host: max_data_loader_n_workers, persistent_data_loader_workers",
    "other": "everything the rules do not name (see the top ops)",
    "gpu_idle": "the GPU waiting on the host: kernel launch overhead (CUDA graphs: compile_mode "
    "reduce-overhead) and host syncs (musubi-tuner reads the loss with .item() after every micro-batch)",
}


def group(name: str, launcher: str, scope: str) -> str:
    """The group of one piece of work: a kernel (or, CPU-only, an op), the op that launched it and
    its scope (`optimizer`, `data`, `backward` or empty) from the hook's export."""
    if scope in ("optimizer", "data"):
        return scope
    low, up = name.lower(), launcher.lower()
    if low.startswith(("memcpy", "memset")) or name in COPIES:
        return "memcpy"
    if any(key in low or key in up for key in ATTENTION):
        return "attention"
    if name in GEMM_OPS or launcher in GEMM_OPS or any(key in low for key in GEMM_KERNELS):
        return "gemm"
    if low.startswith("aten::") or "triton_" in low or "kernel" in low:
        return "elementwise_norm"
    return "other"


def _s(us: float) -> float:
    return round(us / 1e6, 4)


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _host_rows(rows: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["name"] in names:
            found[row["name"]] = {"count": row["count"], "cpu_s": _s(row["cpu_total_us"])}
    return found


def _annotations(raw: dict[str, Any]) -> set[str]:
    """Names of the host's record_function ranges (the window, the optimizer step): in an export of
    protocol 1 their device-side twins were counted as work `(no host op)`, the window's as long as
    the whole step (the H100 run of 2026-12-06 showed 19.4 s of "kernel time" in a 10.2-s window)."""
    if raw.get("protocol", 1) >= 2:
        return set()
    host = {r["name"] for r in raw.get("rows", []) if r.get("device_type") == "CPU"}
    return {w["name"] for w in raw.get("work", []) if w["launcher"] == "(no host op)" and w["name"] in host}


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """The table of one profiled optimizer step (see the module's docstring)."""
    window_us = raw["window_s"] * 1e6
    ranges = _annotations(raw)
    work = [w for w in raw.get("work", []) if not (w["launcher"] == "(no host op)" and w["name"] in ranges)]
    total = sum(w["us"] for w in work)
    groups = {g: {"s": 0.0, "count": 0} for g in GROUPS}
    phases: dict[str, float] = {}
    by_name: dict[str, dict[str, Any]] = {}
    for w in work:
        g = group(w["name"], w["launcher"], w["scope"])
        groups[g]["s"] += w["us"]
        groups[g]["count"] += w["count"]
        phase = w["scope"] or "forward"
        phases[phase] = phases.get(phase, 0.0) + w["us"]
        entry = by_name.setdefault(w["name"], {"name": w["name"], "us": 0.0, "count": 0, "by_group": {}})
        entry["us"] += w["us"]
        entry["count"] += w["count"]
        entry["by_group"][g] = entry["by_group"].get(g, 0.0) + w["us"]
    table: dict[str, Any] = {
        "step": raw["step"],
        "window_s": raw["window_s"],
        "basis": raw["basis"],
        "device": raw.get("device"),
        "torch": raw.get("torch"),
        "work_s": _s(total),
        "groups": {
            g: {
                "s": _s(v["s"]),
                "share_of_work": _share(v["s"], total),
                "share_of_window": _share(v["s"], window_us),
                "count": v["count"],
                "lever": LEVERS[g],
            }
            for g, v in groups.items()
        },
        "phases": {p: {"s": _s(us), "share_of_work": _share(us, total)} for p, us in sorted(phases.items())},
    }
    gpu = raw.get("gpu")
    if gpu and ranges:
        # busy time and gaps were taken over the annotations too (the window covers everything): what
        # is left is the sum of kernel time against the window, an upper bound of the busy share
        table["gpu_unreliable"] = (
            "this export (protocol 1) counted the profiler's own window as GPU work: no busy time or"
            f" gaps; kernels add up to {total / window_us:.1%} of the window (overlapping streams counted"
            " twice)"
        )
        gpu = None
    if gpu:
        idle = gpu["window_us"] - gpu["busy_us"]
        table["gpu"] = {
            "busy_s": _s(gpu["busy_us"]),
            "busy_share": _share(gpu["busy_us"], gpu["window_us"]),
            "idle_s": _s(idle),
            "idle_share": _share(idle, gpu["window_us"]),
            "kernels": gpu["kernels"],
            "gaps": gpu["gaps"],
            "longest_gaps": gpu["longest_gaps"],
            "lever": LEVERS["gpu_idle"],
        }
    rows = raw.get("rows", [])
    optimizer = [
        r for r in rows if r["name"].startswith("Optimizer.step#") and r.get("device_type", "CPU") == "CPU"
    ]
    loader = [r for r in rows if "DataLoader" in r["name"]]
    table["host"] = {
        "syncs": _host_rows(rows, SYNCS),
        "launches": _host_rows(rows, LAUNCHES),
        "optimizer_step": [
            {
                "name": r["name"],
                "count": r["count"],
                "cpu_s": _s(r["cpu_total_us"]),
                "device_s": _s(r["device_total_us"]),
            }
            for r in optimizer
        ],
        "data_loading": [
            {"name": r["name"], "count": r["count"], "cpu_s": _s(r["cpu_total_us"])} for r in loader
        ],
    }
    top = sorted(by_name.values(), key=lambda e: -e["us"])[:TOP]
    table["top"] = [
        {
            "name": e["name"],
            "group": max(e["by_group"], key=e["by_group"].get),
            "count": e["count"],
            "s": _s(e["us"]),
            "share_of_work": _share(e["us"], total),
        }
        for e in top
    ]
    table["trace"] = raw.get("trace")
    return table


def render(table: dict[str, Any]) -> str:
    """The table as text: groups, phases, GPU idle, host syncs, then the top ops."""
    basis = "GPU kernel time" if table["basis"] == "device" else "self CPU time (CPU-only run)"
    lines = [
        f"optimizer step {table['step']} on {table['device']} (torch {table['torch']}): "
        f"window {table['window_s']:.3f} s, {basis} {table['work_s']:.3f} s",
        "",
        f"{'group':<18}{'s':>9}{'of work':>9}{'of window':>11}{'count':>9}  lever",
    ]
    for name, g in table["groups"].items():
        if not g["count"]:
            continue
        of_work = f"{g['share_of_work']:.1%}" if g["share_of_work"] is not None else "-"
        of_window = f"{g['share_of_window']:.1%}" if g["share_of_window"] is not None else "-"
        lines.append(f"{name:<18}{g['s']:>9.3f}{of_work:>9}{of_window:>11}{g['count']:>9}  {g['lever']}")
    lines.append("")
    lines.append("phases: " + ", ".join(f"{p} {v['s']:.3f} s" for p, v in table["phases"].items()))
    gpu = table.get("gpu")
    if table.get("gpu_unreliable"):
        lines.append(f"GPU timeline: {table['gpu_unreliable']}")
    if gpu:
        lines.append(
            f"GPU busy {gpu['busy_s']:.3f} s ({gpu['busy_share']:.1%} of the window),"
            f" idle {gpu['idle_s']:.3f} s, {gpu['kernels']} kernels; gaps: "
            + ", ".join(f"{k} {v['count']} ({v['us'] / 1e6:.3f} s)" for k, v in gpu["gaps"].items())
        )
        lines.append(f"  lever: {gpu['lever']}")
        for gap in gpu["longest_gaps"][:5]:
            lines.append(
                f"  gap {gap['us'] / 1e3:8.2f} ms at {gap['at_us'] / 1e6:7.3f} s:"
                f" host in {gap['host_op'] or '?'} (after {gap['after_kernel'][:40]},"
                f" before {gap['before_kernel'][:40]})"
            )
    host = table["host"]
    syncs = ", ".join(f"{k} x{v['count']} {v['cpu_s']:.3f} s" for k, v in host["syncs"].items())
    launches = ", ".join(f"{k} x{v['count']} {v['cpu_s']:.3f} s" for k, v in host["launches"].items())
    lines.append(f"host syncs: {syncs or 'none recorded'}")
    lines.append(f"kernel launches: {launches or 'none recorded'}")
    for r in host["optimizer_step"]:
        lines.append(
            f"optimizer: {r['name']} x{r['count']}: host {r['cpu_s']:.3f} s, GPU {r['device_s']:.3f} s"
        )
    for r in host["data_loading"]:
        lines.append(f"data: {r['name']} x{r['count']}: host {r['cpu_s']:.3f} s")
    lines.append("")
    lines.append(f"top {len(table['top'])} by {basis}:")
    for t in table["top"]:
        lines.append(
            f"{t['s']:9.4f} s {t['share_of_work']:6.1%} x{t['count']:<6} {t['group']:<17} {t['name'][:90]}"
        )
    trace = table.get("trace") or {}
    lines.append("")
    lines.append(
        f"chrome trace: {trace.get('file')} ({trace.get('mb')} MB)"
        if trace.get("written")
        else f"chrome trace: not kept ({trace.get('why', 'not asked for')})"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    data = json.loads(Path(argv[0]).read_text())
    raw = data.get("raw", data)  # a returned profile-<variant>.json holds its raw export
    sys.stdout.write(render(summarise(raw)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
