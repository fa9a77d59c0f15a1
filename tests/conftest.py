"""Shared fixtures: a tiny project on disk (spec, models, dataset) built per test."""

from __future__ import annotations

import json
import os
import struct
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def write_image(path: Path, size: tuple[int, int] = (64, 96)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, "white").save(path)
    return path


def safetensors_bytes() -> bytes:
    """A minimal valid safetensors file (one F16 tensor), what `fplora check` reads model headers for."""
    header = json.dumps({"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(4)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Build a project in tmp_path and return a function that writes spec YAML into it.

    The project has the five model files, a two-record one-frame dataset (two controls each)
    and `configs/base.yaml` holding the models; `make(text)` writes `configs/v1.yaml`.
    """
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    for name in (
        "dit/model-00001-of-00002.safetensors",
        "dit/model-00002-of-00002.safetensors",
        "vae/vae.safetensors",
        "te1/model.safetensors",
        "te2/model.safetensors",
        "ie/model.safetensors",
    ):
        (models / name).parent.mkdir(parents=True, exist_ok=True)
        (models / name).write_bytes(safetensors_bytes())
    data = tmp_path / "data" / "dataset-v1"
    lines = []
    for i in (1, 2):
        write_image(data / f"t/{i}.png")
        write_image(data / f"c/{i}_0.png")
        write_image(data / f"c/{i}_1.png")
        record = {
            "image_path": f"t/{i}.png",
            "control_path_0": f"c/{i}_0.png",
            "control_path_1": f"c/{i}_1.png",
            "caption": f"a character turns, take {i}",
        }
        lines.append(json.dumps(record))
    (data / "metadata-v1.jsonl").write_text("\n".join(lines) + "\n")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "base.yaml").write_text(
        textwrap.dedent(
            """\
            project: demo
            models:
              dir: ../models
              dit: dit/model-00001-of-00002.safetensors
              vae: vae/vae.safetensors
              text_encoder1: te1/model.safetensors
              text_encoder2: te2/model.safetensors
              image_encoder: ie/model.safetensors
            data:
              resolution: [64, 96]
              batch_size: 2
            one_frame:
              clean_indices: [0, 10]
              target_index: 5
              no_post: true
            train:
              output_dir: ../out
              max_train_steps: 4
              save_every_n_steps: 2
              logging: {with: null}
              split_attn: true
            sample:
              prompts:
                - record: 1
            """
        )
    )

    def make(text: str = "", name: str = "v1.yaml") -> Path:
        text = textwrap.dedent(text)
        body = "" if "extends:" in text else "extends: base.yaml\n"
        if "datasets:" not in text:
            body += "datasets:\n  - jsonl: ../data/dataset-v1/metadata-v1.jsonl\n"
        path = configs / name
        path.write_text(body + text)
        return path

    return make


MUSUBI_PYTHON_ENV = "FPLORA_TEST_MUSUBI_PYTHON"
MUSUBI_PYTHON_DEFAULT = "/tmp/fplora-musubi-venv/bin/python"


@dataclass(frozen=True)
class MusubiPython:
    """The CPU musubi-tuner Python that scripts/musubi-python.sh builds, and the environment a test
    runs fplora with so that fplora uses it (no GPU: CUDA hidden; no Hub: offline)."""

    python: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def musubi_python(tmp_path_factory: pytest.TempPathFactory) -> MusubiPython:
    """Tests marked `musubi` run musubi-tuner's real code: they skip where the Python is not built
    (a laptop), but under CI=true a missing one is a failure, so CI never passes by skipping them."""
    python = os.environ.get(MUSUBI_PYTHON_ENV, MUSUBI_PYTHON_DEFAULT)
    if not Path(python).is_file():
        why = f"no musubi-tuner Python at {python}: build it with scripts/musubi-python.sh ({MUSUBI_PYTHON_ENV})"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    env = {"FPLORA_MUSUBI_PYTHON": python, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    # what a rehearsal keeps per machine (the stand-in DiT, compile caches): the session's, not the user's
    env["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    return MusubiPython(python, env)
