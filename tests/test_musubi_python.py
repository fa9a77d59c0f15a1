"""The CPU musubi-tuner Python (scripts/musubi-python.sh) holds the musubi-tuner commit fplora pins,
and its entry points import on a machine without a GPU."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fplora.musubi import schema

pytestmark = pytest.mark.musubi


def test_it_holds_the_pinned_commit(musubi_python) -> None:
    venv = Path(musubi_python.python).parents[1]
    assert (venv / "musubi-tuner" / "COMMIT").read_text().strip() == schema.pinned_commit()
    done = subprocess.run(
        [musubi_python.python, "-c", "import musubi_tuner, torch, accelerate; print(musubi_tuner.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()).is_relative_to(venv / "musubi-tuner" / "src")
