"""benchmarks/ is scripts, not a package: the tests import its modules (the drivers' harness, the
matrices, fold_speed) as the scripts import each other, with benchmarks/ first on sys.path for the
import only."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark_module(name: str, under: str = "") -> ModuleType:
    """`benchmarks/[under/]<name>.py` (or `harness.<name>`), imported; sys.path as it was afterwards
    (some scripts put their own folder first when imported)."""
    saved = list(sys.path)
    sys.path.insert(0, str(BENCHMARKS / under))
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved
