"""Installs the CPU smoke test's stand-ins in every Python that run.sh starts, including the ones
`accelerate launch` starts in turn: those are started exactly as fplora starts them, so the only
way in is the environment (this folder on PYTHONPATH, FPLORA_CPU_SMOKE=1).

Nothing is imported up front: an import hook runs `fplora_cpu_standins.PATCHES` just before or
just after the named musubi-tuner modules execute, so a script binds the stand-ins when it does
`from ... import load_vae`, exactly where it would bind the real ones.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from typing import Any


class _PatchingFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        from fplora_cpu_standins import PATCHES  # imported below, before this finder is installed

        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        before, after = PATCHES[name]
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: Any) -> None:
            if before:
                before(module)
            exec_module(module)
            if after:
                after(module)

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


if os.environ.get("FPLORA_CPU_SMOKE") == "1":
    import fplora_cpu_standins  # noqa: F401  (standard library only at module level)

    sys.meta_path.insert(0, _PatchingFinder())
