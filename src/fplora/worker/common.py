"""What the sweep and evaluation workers (`sweep.py`, `eval.py`) share: their event lines, the head
of their plan reading, their command line, and the loading of `musubi_calls.py`.

A worker module, like them: it runs in the musubi-tuner Python, which need not have fplora installed,
so it imports only the standard library, and the workers load it by its path (`_load_common` in each)
rather than as `fplora.worker.common`. That holds however a worker is started: as a launched file, by
path in fplora's tests, or through `runpy` in the rehearsal worker.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

Emit = Callable[..., None]


class PlanError(ValueError):
    """The plan file is not one this worker understands."""


def emitter(prefix: str) -> Emit:
    """A worker's `emit(event, **fields)`: one event line on stdout after `prefix`, which marks it among
    musubi-tuner's own output on the same stream."""

    def emit(event: str, **fields: Any) -> None:
        # single `os.write` calls, so that the line does not interleave with the log lines other code
        # writes to the same pipe
        data = (prefix + json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n").encode()
        sys.stdout.flush()
        while data:
            written = os.write(sys.stdout.fileno(), data)
            data = data[written:]

    return emit


def read_plan_json(path: Path, protocol: int) -> dict[str, Any]:
    """The plan's JSON object, refused (PlanError) when unreadable or of another protocol version."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PlanError(f"cannot read the plan {path}: {error}") from None
    if not isinstance(raw, dict) or raw.get("protocol") != protocol:
        found = raw.get("protocol") if isinstance(raw, dict) else None
        raise PlanError(f"plan protocol {found!r}, this worker speaks {protocol}: fplora and worker differ")
    return raw


def reason(error: BaseException) -> str:
    """An exception as an event's `error`: its type and message."""
    return f"{type(error).__name__}: {error}"


def main(
    argv: Sequence[str] | None,
    description: str,
    read_plan: Callable[[Path], Any],
    run: Callable[[Any], int],
    emit: Emit,
) -> int:
    """`<worker> --plan <file>`: the plan read (an `error` event and exit 2 when it cannot be), then
    `run(plan)`'s exit code."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--plan", required=True, type=Path, help="the plan fplora wrote")
    options = parser.parse_args(argv)
    try:
        plan = read_plan(options.plan)
    except PlanError as error:
        emit("error", error=str(error))
        return 2
    return run(plan)


def musubi_calls() -> ModuleType:
    """`musubi_calls.py` beside this file: every musubi-tuner call the workers make, loaded by its path
    like this module."""
    name = "fplora_musubi_calls"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("musubi_calls.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # NamedTuples look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]
