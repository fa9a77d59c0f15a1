"""The exported LoRA is right, not only well named: checked with musubi-tuner's real code.

On a tiny FramePack DiT (2 double and 2 single blocks),
musubi-tuner's own network saves a LoRA; `fplora export` writes the diffusers layout; then, for every
wrapped module, the weights a diffusers/PEFT loader makes of the exported file (W + B·A, PEFT's
scaling 1 without alpha, as FramePack-Studio's `load_lora_adapter(..., network_alphas=None)` has
it) and those musubi-tuner's `fpack_generate_video` path makes of it (its diffusers converter sets
alpha = rank, then its own merge) must equal musubi-tuner's own merge of the original file within
1e-6. A module missing from the export, or a key naming no module, fails the test.

And the module list fplora maps from (`musubi/framepack.py`) must be exactly, in order, what
musubi-tuner's FramePack network wraps in the real-size DiT (built on the meta device).

The script runs in the CPU musubi-tuner Python (`musubi_python`, marker `musubi`); it lives in
tests/fixtures/musubi_export_merge.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fplora.cli import app
from fplora.musubi.framepack import lora_modules, musubi_name

pytestmark = pytest.mark.musubi

SCRIPT = Path(__file__).parent / "fixtures" / "musubi_export_merge.py"
TOLERANCE = 1e-6


def _run(musubi_python, *args: str) -> object:
    done = subprocess.run(
        [musubi_python.python, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **musubi_python.env},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def saved(musubi_python, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny DiT and musubi-tuner's LoRAs on it: bf16 at alpha/rank 2, bf16 and float32 at 0.75."""
    folder = tmp_path_factory.mktemp("musubi-loras")
    _run(musubi_python, "make", str(folder))
    return folder


@pytest.mark.parametrize(
    ("save", "dtype"),
    [("bf16-a8", "BF16"), ("bf16-a3", "F32"), ("fp32-a3", "F32")],
)
def test_every_module_merges_as_musubi_tuner_merges_the_original(
    musubi_python, saved: Path, project: Callable[..., Path], save: str, dtype: str
) -> None:
    spec = project()
    out = spec.parent.parent / "out"
    out.mkdir()
    lora = out / "demo-v1-step00000002.safetensors"
    shutil.copy(saved / f"{save}.safetensors", lora)
    result = CliRunner().invoke(app, ["export", str(spec), "--lora", "step2", "--to", "diffusers"])
    assert result.exit_code == 0, result.output
    exported = out / "export" / "demo-v1-step00000002" / "demo-v1-step00000002-diffusers.safetensors"
    header = json.loads(exported.read_bytes()[8 : 8 + int.from_bytes(exported.read_bytes()[:8], "little")])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {dtype}

    found = _run(musubi_python, "merge", str(saved), str(lora), str(exported))
    assert isinstance(found, dict)
    print(f"{save}: {json.dumps(found)}")  # the figures, for the report (pytest -s)
    assert found["musubi_modules"] == 2 * 12 + 2 * 5
    assert found["missing"] == [] and found["unknown"] == []
    assert found["exported_modules"] == found["musubi_modules"]
    assert found["over"] == []
    assert found["max_peft"] <= TOLERANCE
    assert found["max_generate"] <= TOLERANCE
    # why fplora maps names itself: musubi-tuner's convert_lora.py --target other names only the
    # double blocks' 8 attention Linears right (they are in its Qwen-Image table); every ff, ff_context
    # and single-block name comes out wrong (`single.transformer.blocks.0.proj.mlp`): 280 of the 440
    assert found["convert_lora_right"] == 2 * 8
    assert found["smallest_module_change"] > 1e-3  # the LoRA moves every module: the check is not vacuous


def test_the_module_list_is_what_musubi_tuner_wraps_in_the_real_dit(musubi_python) -> None:
    found = _run(musubi_python, "names")
    assert isinstance(found, list)
    assert [path for _, path in found] == lora_modules()
    assert [name for name, _ in found] == [musubi_name(path) for path in lora_modules()]
    assert len(found) == 440
