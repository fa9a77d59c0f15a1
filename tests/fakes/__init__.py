"""Test doubles for what fplora runs: a recording fake of "the musubi-tuner Python" and `runpodctl`.

`fake_python` is the executable that `FPLORA_MUSUBI_PYTHON` points at; the checking and emulating
lives in `fake_musubi`, imported here as `fake` so that tests check `--dry-run` output with the
very validator the fake applies to the commands it is given.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# test modules load `fakes.fixtures` through `pytest_plugins` after importing helpers from it:
# mark it for assert rewriting before anything imports it
pytest.register_assert_rewrite("fakes.fixtures")

from fakes import fake_musubi as fake  # noqa: E402

FAKES = Path(__file__).resolve().parent
FAKE_PYTHON = FAKES / "fake_python"
FAKE_RUNPODCTL = FAKES / "runpodctl"

__all__ = ["FAKES", "FAKE_PYTHON", "FAKE_RUNPODCTL", "fake"]
