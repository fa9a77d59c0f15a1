"""A stage's asserts (collected, never raised) and the file checks several stages share: LoRA headers,
PNG sizes, sha256 of a run's files, fplora's run manifest and its segments."""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import struct
from pathlib import Path
from typing import Any

from harness import state
from harness.proc import PROGRESS, Ran
from harness.state import NETWORK_DIM


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
            out[str(file.relative_to(state.CFG.runs))] = digest.hexdigest()
    return out


def manifest(version: str) -> dict[str, Any] | None:
    path = state.CFG.runs / f"{state.CFG.output_name(version)}.fplora-run.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_outputs(checks: Checks, name: str, steps: range, *, states: bool, final: bool) -> None:
    runs = state.CFG.runs
    for step in steps:
        check_lora(checks, runs / f"{name}-step{step:08d}.safetensors")
        if states:
            folder = runs / f"{name}-step{step:08d}-state"
            checks.ok(folder.is_dir() and any(folder.iterdir()), f"state folder {folder.name}")
    if final:
        check_lora(checks, runs / f"{name}.safetensors")
        folder = runs / f"{name}-state"
        if states:
            checks.ok(folder.is_dir() and any(folder.iterdir()), f"final state folder {folder.name}")


def check_samples(checks: Checks, name: str, steps: range, at_first: bool) -> list[str]:
    sample = state.CFG.runs / "sample"
    found = sorted(p.name for p in sample.glob(f"{name}_*.png")) if sample.is_dir() else []
    wanted = (["e000000"] if at_first else []) + [f"{s:06d}" for s in steps]
    for tag in wanted:
        hits = [f for f in found if f.startswith(f"{name}_{tag}_")]
        checks.ok(hits, f"training sample {name}_{tag}_*.png", found[:8])
        for hit in hits[:1]:
            size = png_size(sample / hit)
            shape = (state.CFG.width, state.CFG.height)
            checks.ok(size == shape, f"{hit} is a {shape[0]}x{shape[1]} PNG", size)
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
