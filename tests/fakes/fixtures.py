"""A throw-away fplora project wired to the fake musubi-tuner: the `workspace` fixture.

Each test gets its own folder with a small spec (its own dummy model files, a copy of the bundled
example dataset, outputs inside the folder), `FPLORA_MUSUBI_PYTHON` pointing at the fake, every fake
call recorded in `record.jsonl`, and the working directory set to the folder, because fplora
remembers the last spec and resolves displayed paths against the working directory.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shlex
import shutil
import stat
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner, Result

from fakes import FAKE_PYTHON, FAKE_RUNPODCTL, fake
from fplora.cli import app
from fplora.jobs import cache as cache_job

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DATASET = REPO / "datasets" / "example" / "dataset-v1"
MODEL_FILES = {
    "dit": "dit/model-00001-of-00002.safetensors",
    "vae": "vae.safetensors",
    "text_encoder1": "te1.safetensors",
    "text_encoder2": "te2.safetensors",
    "image_encoder": "image_encoder.safetensors",
}
FAKE_ENV_PREFIXES = ("FAKE_", "FPLORA_")


def base_spec() -> dict[str, Any]:
    """The test spec: example.yaml's shape, tiny steps, every file inside the workspace."""
    return {
        "project": "fake",
        "models": {"dir": "../models", **MODEL_FILES, "fp8_llm": True},
        "data": {"resolution": [64, 96], "batch_size": 2, "enable_bucket": True},
        "datasets": [{"jsonl": "../data/dataset-v1/metadata-v1.jsonl"}],
        "one_frame": {"clean_indices": [0, 10], "target_index": 5, "no_post": True},
        "train": {
            "output_dir": "../outputs",
            "split_attn": True,  # batch 2 with sdpa needs it on the GPU (spec.rules.combinations)
            "max_train_steps": 4,
            "save_every_n_steps": 1,
            "save_state": True,
            "logging": {"with": None},
            "optimizer": {"type": "adamw8bit", "learning_rate": 1.0e-3},
        },
        "sample": {"at_first": True, "every_n_steps": 2, "steps": 2, "prompts": [{"record": 1}]},
        "infer": {"multipliers": [1.0], "prompts": [{"record": 1}, {"record": 2}]},
    }


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class Workspace:
    """One test's project folder and the handles tests need on it."""

    root: Path
    spec_path: Path
    record: Path
    python: Path
    bin: Path
    data: dict[str, Any]

    @property
    def output_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def output_name(self) -> str:
        return "fake-v1"

    @property
    def render_dir(self) -> Path:
        return self.root / "configs" / "v1"

    @property
    def cache_dir(self) -> Path:
        return self.render_dir / "cache" / "dataset-v1" / "metadata-v1"

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / f"{self.output_name}.fplora-run.json"

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_spec(self, **changes: Any) -> None:
        """Rewrite the spec with `changes` deep-merged into the current one."""
        self.data = _merge(self.data, changes)
        yaml = YAML(typ="safe")
        yaml.default_flow_style = False
        with self.spec_path.open("w", encoding="utf-8") as handle:
            yaml.dump(self.data, handle)

    def cli(self, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
        """`fplora <args>` in-process; `env` is set for the call only (the fake's knobs)."""
        argv = [str(a) for a in args]
        return CliRunner().invoke(app, argv, env=dict(env or {}), catch_exceptions=False)

    def records(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text(encoding="utf-8").splitlines()]

    def calls(self, script: str | None = None) -> list[dict[str, Any]]:
        """Launches the fake received (the probe excluded), optionally of one script."""
        found = [r for r in self.records() if "args" in r and r.get("args", [])[:1] == ["-m"]]
        if script is not None:
            found = [r for r in found if f"musubi_tuner.{script}" in r["args"]]
        return found

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == kind]

    def forget_calls(self) -> None:
        self.record.unlink(missing_ok=True)


def process_gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaps yet (a child of init in a container)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder` with its content hash and mtime: did anything change?"""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(folder))] = (digest, path.stat().st_mtime_ns)
    return found


def _model_bytes(name: str) -> bytes:
    """A stand-in model: a valid safetensors file with no tensors, named in its metadata
    (`fplora check` reads every model's header)."""
    header = json.dumps({"__metadata__": {"stand_in": name}}).encode()
    return struct.pack("<Q", len(header)) + header


def _executable(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def make_workspace(root: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """Build the project under `root`, point fplora at the fake and chdir there."""
    for name in list(os.environ):
        if name.startswith(FAKE_ENV_PREFIXES) or name == "RUNPOD_POD_ID":
            monkeypatch.delenv(name)
    models = root / "models"
    for relative in MODEL_FILES.values():
        path = models / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_model_bytes(relative))
    (models / "dit" / "model-00002-of-00002.safetensors").write_bytes(_model_bytes("second shard"))
    shutil.copytree(EXAMPLE_DATASET, root / "data" / "dataset-v1")
    (root / "configs").mkdir()
    bin_dir = root / "bin"
    bin_dir.mkdir()
    # the interpreter running the tests, not `env python3`: same tomllib, and no pyenv shim per call
    python = _executable(
        bin_dir / "musubi-python",
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_PYTHON))} "$@"\n',
    )
    workspace = Workspace(
        root=root,
        spec_path=root / "configs" / "v1.yaml",
        record=root / "record.jsonl",
        python=python,
        bin=bin_dir,
        data=base_spec(),
    )
    workspace.write_spec()
    monkeypatch.setenv("FPLORA_MUSUBI_PYTHON", str(python))
    monkeypatch.setenv("FAKE_RECORD", str(workspace.record))
    # the user's cache folder (state.user_cache: what is kept per machine) is the test's own
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
    monkeypatch.chdir(root)
    return workspace


def add_runpodctl(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the fake `runpodctl` first on PATH."""
    _executable(
        workspace.bin / "runpodctl",
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_RUNPODCTL))} "$@"\n',
    )
    monkeypatch.setenv("PATH", f"{workspace.bin}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A fresh project in tmp_path, run against the fake (see `make_workspace`)."""
    return make_workspace(tmp_path, monkeypatch)


@pytest.fixture
def cached(workspace: Workspace) -> Workspace:
    """A workspace with complete caches, as `fplora cache` leaves them (store entries, linked views).

    The real `fplora cache`, with the cache scripts run in-process by the fake's own
    validate-and-emulate instead of a subprocess, to keep the suite fast; calls are not recorded.
    """

    def run(argv: Sequence[str], *, log: Path, **_: Any) -> Any:
        return SimpleNamespace(returncode=fake.run([str(a) for a in argv[1:]], workspace.root))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cache_job.process, "run", run)
        # the caches only: the rehearsal runs its own worker, which this in-process stand-in is not
        result = workspace.cli("cache", str(workspace.spec_path), "--no-rehearse")
    assert result.exit_code == 0, result.output
    return workspace
