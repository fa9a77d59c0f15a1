"""The workers' musubi-tuner calls (src/fplora/worker/musubi_calls.py): every one named in one table,
checked against the pinned commit in the real musubi-tuner, and nothing of musubi-tuner called
around it."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fplora.musubi import schema

WORKER = Path(__file__).resolve().parents[1] / "src" / "fplora" / "worker"
CALLS_FILE = WORKER / "musubi_calls.py"


def _calls_module() -> ModuleType:
    """The adapter as a worker loads it: by path (it imports only the standard library at the top)."""
    spec = importlib.util.spec_from_file_location("fplora_musubi_calls_test", CALLS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_adapter_pins_the_commit_fploras_schema_was_read_from() -> None:
    assert schema.pinned_commit() == _calls_module().PINNED_COMMIT


@pytest.mark.parametrize("worker", ["sweep.py", "eval.py"])
def test_a_worker_calls_musubi_tuner_only_through_the_adapter(worker: str) -> None:
    """No import of musubi_tuner in the worker itself, and every adapter function it uses exists."""
    tree = ast.parse((WORKER / worker).read_text(encoding="utf-8"))
    imported = {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] == "musubi_tuner"}
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and (
            (isinstance(node.value, ast.Name) and node.value.id == "calls")
            or (isinstance(node.value, ast.Attribute) and node.value.attr == "calls")
        )
    }
    adapter = _calls_module()
    assert used, "the worker uses the adapter"
    assert sorted(name for name in used if not hasattr(adapter, name)) == []


CHECK = """
import importlib.util, json, sys
import torch
if not torch.cuda.is_available():
    torch.cuda.current_device = lambda: 0  # musubi-tuner calls it at import time (wan/modules/t5.py)
spec = importlib.util.spec_from_file_location("fplora_musubi_calls", sys.argv[1])
calls = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = calls
spec.loader.exec_module(calls)
found = {"now": calls.check(), "resolved": sorted(n for n in calls.CALLS if calls.resolve(n) is not None)}
calls.CALLS["load_vae"] = calls.Call(calls.CALLS["load_vae"].where, ("vae_path", "device"))
found["changed"] = calls.check()
print("CALLS " + json.dumps(found))
"""


@pytest.mark.musubi
def test_every_call_fits_the_pinned_musubi_tuner(musubi_python) -> None:
    """In the CPU musubi-tuner Python: each call's parameters are those at the pinned commit, and a
    call whose parameters changed is named."""
    import os

    done = subprocess.run(
        [musubi_python.python, "-c", CHECK, str(CALLS_FILE)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **musubi_python.env},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("CALLS ")]
    assert done.returncode == 0 and lines, (done.stdout + done.stderr)[-3000:]
    found = json.loads(lines[-1][len("CALLS ") :])
    assert found["now"] == []
    assert found["resolved"] == sorted(_calls_module().CALLS)
    assert found["changed"] == [
        "musubi_tuner.fpack_generate_video:load_vae: parameters ('vae_path', 'vae_chunk_size',"
        " 'vae_spatial_tile_sample_min_size', 'vae_tiling', 'device'), written for ('vae_path', 'device')"
    ]


def test_check_names_each_call_that_is_gone_or_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without musubi-tuner: the check's own rules, on a stand-in module. A pass-through wrapper
    (`*args, **kwargs`, as the CPU rehearsal patches its stand-in loaders in) fits any call."""
    adapter = _calls_module()
    stand_in = ModuleType("fplora_stand_in_musubi")
    exec(
        "def same(x, y=1): pass\n"
        "def renamed(x, device): pass\n"
        "def wrapper(*args, **kwargs): pass\n"
        "class Trainer:\n"
        "    def __init__(self): pass\n"
        "    def step(self, args): pass\n",
        stand_in.__dict__,
    )
    monkeypatch.setitem(sys.modules, stand_in.__name__, stand_in)
    where = stand_in.__name__
    monkeypatch.setattr(
        adapter,
        "CALLS",
        {
            "same": adapter.Call(f"{where}:same", ("x", "y")),
            "renamed": adapter.Call(f"{where}:renamed", ("x", "dev")),
            "wrapper": adapter.Call(f"{where}:wrapper", ("a", "b")),
            "trainer": adapter.Call(f"{where}:Trainer", ()),
            "method": adapter.Call(f"{where}:Trainer.step", ("args",)),
            "gone": adapter.Call(f"{where}:missing", ()),
        },
    )
    assert adapter.check() == [
        f"{where}:renamed: parameters ('x', 'device'), written for ('x', 'dev')",
        f"{where}:missing: gone (AttributeError: module '{where}' has no attribute 'missing')",
    ]
    with pytest.raises(
        RuntimeError, match=r"differs from 30c658c4, .*renamed.*install musubi-tuner at 30c658c4"
    ):
        adapter.require_pinned_calls()
