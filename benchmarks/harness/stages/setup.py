"""Setup stages: install musubi-tuner's wheels and source and fplora's dependencies, random full-size
weights, the synthetic dataset, then `fplora check` on every spec."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from harness import state
from harness.asserts import Checks
from harness.fake import local_dataset, local_models
from harness.proc import fplora, run
from harness.specs import write_specs
from harness.state import MODEL_FILES, Stage


def av_stub() -> None:
    """musubi-tuner imports PyAV at import time (dataset/media_utils.py) but uses it only for video.
    The 34 MB wheel (`.whl2`) leaves little room in a call's 64 MiB beside the rest, so a driver that
    writes no video may leave it behind and get this stub, which fails only when used."""
    stub = Path("/tmp/site/av")
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text(
        "def _missing(*a, **k):\n    raise RuntimeError('PyAV stub (benchmarks): video needs the av wheel')\n"
        "open = _missing\nclass VideoFrame:\n    from_ndarray = from_image = staticmethod(_missing)\n"
        "__version__ = '0.0.0+stub'\n"
    )


def stage_install(stage: dict[str, Any], checks: Checks) -> None:
    if state.CFG.local:
        ran = fplora(stage, "--version")
        checks.rc(ran, what="fplora --version (local)")
        return
    ran = run(
        stage, ["bash", str(state.SETUP / "install.sh")], cwd=state.REPO
    )  # it reads .whl/ .whl2/ .musubi/
    checks.rc(ran, what="install.sh")
    if not (state.REPO / ".whl2").is_dir():
        av_stub()
        print("=== install: .whl2 (PyAV) not carried: a stub stands in; no stage may write video", flush=True)
    wheels = sorted(str(p) for p in state.WHL3.glob("*.whl"))
    checks.ok(wheels, ".whl3 holds wheels (run benchmarks/gpu_prepare.sh here first)")
    # with bytecode, as a user's install has it (fplora's own start; install.sh compiles the rest)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    argv = [*pip, "--no-cache-dir", "--upgrade", "--target", "/tmp/site", *wheels]
    ran = run(stage, argv, extra_env={"PYTHONPATH": ""})  # pip itself from the image alone
    checks.rc(ran, what="pip install .whl3 into /tmp/site")
    probe = (
        "import importlib.metadata as md, json, sys\n"
        "import pydantic, ruamel.yaml, tomli_w, typer, rich, PIL, fplora\n"
        "names = ['pydantic', 'pydantic-core', 'ruamel.yaml', 'tomli-w', 'typing-extensions', 'typer',\n"
        "         'click', 'rich', 'pillow', 'accelerate', 'torch', 'transformers', 'bitsandbytes']\n"
        "def version(n):\n"
        "    try:\n"
        "        return md.version(n)\n"
        "    except md.PackageNotFoundError:\n"
        "        return None\n"
        "v = {n: version(n) for n in names}\n"
        "v['fplora_from'] = fplora.__file__; v['python'] = sys.version.split()[0]\n"
        "print('VERSIONS ' + json.dumps(v))\n"
    )
    ran = run(stage, [sys.executable, "-c", probe])
    checks.rc(ran, what="import fplora and its deps from /tmp/site + src")
    for _, text in ran.lines:
        if text.startswith("VERSIONS "):
            versions = json.loads(text[9:])
            state.SUMMARY["versions"] = versions
            checks.ok(str(state.SRC) in versions["fplora_from"], f"fplora runs from {state.SRC}")
            for wheel in state.WHL3.glob("*.whl"):
                dist, version = wheel.name.split("-")[:2]
                key = {"pydantic_core": "pydantic-core", "ruamel_yaml": "ruamel.yaml", "tomli_w": "tomli-w"}
                key |= {"typing_extensions": "typing-extensions", "pydantic": "pydantic"}
                if dist in key:
                    got = versions.get(key[dist])
                    checks.ok(got == version, f"{key[dist]} {version} from .whl3", got)
    ran = fplora(stage, "--help")
    checks.rc(ran, what="fplora --help")
    if not checks.failed:
        (state.CFG.marks / "install.ok").write_text("ok\n")


def stage_weights(stage: dict[str, Any], checks: Checks) -> None:
    if state.CFG.local:
        local_models()
        checks.ok(True, "stand-in model files")
        return
    ran = run(stage, [sys.executable, str(state.SETUP / "make_weights.py"), "--root", str(state.CFG.models)])
    checks.rc(ran, what="make_weights.py")
    missing = [n for n in MODEL_FILES if not (state.CFG.models / n).is_file()]
    checks.ok(not missing, "all model files (memo layout)", missing)


def stage_data(stage: dict[str, Any], checks: Checks) -> None:
    if state.CFG.local:
        local_dataset()
    else:
        argv = [sys.executable, str(state.SETUP / "make_dataset.py"), "--root", str(state.CFG.data)]
        ran = run(
            stage,
            [
                *argv,
                *("--n", str(state.CFG.records), "--width", str(state.CFG.width)),
                *("--height", str(state.CFG.height), "--controls", str(state.CFG.controls)),
            ],
        )
        checks.rc(ran, what="make_dataset.py")
    lines = state.CFG.jsonl.read_text().splitlines() if state.CFG.jsonl.is_file() else []
    checks.ok(len(lines) == state.CFG.records, f"{state.CFG.records} records", len(lines))
    if lines:
        first = json.loads(lines[0])
        want = {*(f"control_path_{c}" for c in range(state.CFG.controls)), "caption"}
        extra = {k for k in first if k.startswith("control_path_")} - want
        checks.ok(
            want <= set(first) and not extra, f"records have {state.CFG.controls} control image(s)", first
        )


def stage_check(stage: dict[str, Any], checks: Checks) -> None:
    write_specs()
    for version in ("e2e", state.CFG.g_version, "timing"):
        ran = fplora(stage, "check", str(state.CFG.spec(version)))
        checks.rc(ran, what=f"fplora check {version}.yaml (models too)")
        checks.ok(re.search(r": ok, 1 dataset", ran.text), f"check {version}: ok line", ran.text[-300:])
        checks.ok(
            not re.search(r"^warning:", ran.text, re.MULTILINE),
            f"check {version}: no warnings",
            ran.text[-300:],
        )
    if not checks.failed:
        (state.CFG.marks / "check.ok").write_text("ok\n")


def _installed() -> bool:
    if state.CFG.local:
        return True
    return (state.CFG.marks / "install.ok").is_file() and Path("/tmp/site/.e2e-installed").is_file()


STAGES = {
    "install": Stage(stage_install, 15, _installed),
    "weights": Stage(stage_weights, 95, lambda: (state.CFG.models / "weights.json").is_file()),
    "data": Stage(stage_data, 10, lambda: state.CFG.jsonl.is_file()),
    "check": Stage(stage_check, 15, lambda: (state.CFG.marks / "check.ok").is_file()),
}
