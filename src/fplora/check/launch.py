"""Multi-GPU launch checks: what musubi-tuner does under DDP that a user would not expect.

Read from musubi-tuner's source at the pinned commit (and the two-GPU run in docs/gpu-e2e.md): the
DiT is not wrapped by DDP, only the LoRA network is, so every process loads its own full DiT; with
block swapping each keeps that copy in CPU memory. An integer warmup is counted in optimizer steps
of one process, and musubi-tuner divides it by the number of processes.
"""

from __future__ import annotations

import os

from fplora.problems import Problem
from fplora.spec.models import Spec

DIT_CPU_GB = 26  # bf16 FramePack DiT (12.9 B parameters) held in CPU memory per process with block swap


def _memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


def check_launch(spec: Spec) -> list[Problem]:
    processes = spec.launch.num_processes // max(spec.launch.num_machines, 1)
    if processes < 2:
        return []
    problems = []
    if spec.train.blocks_to_swap:
        need = processes * DIT_CPU_GB
        have = _memory_gb()
        if have is not None and need > have * 0.8:
            problems.append(
                spec.problem(
                    ("train", "blocks_to_swap"),
                    f"with block swap each of {processes} processes keeps a DiT copy"
                    f" (~{DIT_CPU_GB} GB) in CPU memory: ~{need} GB of this machine's {have:.0f} GB",
                    "lower blocks_to_swap to 0 if the GPUs have room, or use fewer processes",
                    severity="warning",
                )
            )
    warmup = spec.train.optimizer.lr_warmup_steps
    if isinstance(warmup, int) and warmup:  # a float is a share of the steps, not divided
        problems.append(
            spec.problem(
                ("train", "optimizer", "lr_warmup_steps"),
                f"musubi-tuner divides an integer warmup by the {processes} processes"
                f" ({warmup} → {warmup // processes})",
                f"write {warmup * processes} to warm up for {warmup} steps",
                severity="warning",
            )
        )
    return problems
