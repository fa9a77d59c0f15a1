"""The README's example sessions are real: each `$ uv run fplora ...` line in a console block runs on a
copy of the bundled example, and what the README shows under it must be what fplora prints.

A README that drifts from the tool is the first thing a new user trips on; this keeps the two in step.
Absolute paths print under the copy's folder; the README shows them relative to the repo, as it says.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROMPT = "$ uv run fplora "


def sessions() -> list[tuple[int, list[str], list[str]]]:
    """(README line, fplora argv, expected output lines) for every fplora command in a console block."""
    found: list[tuple[int, list[str], list[str]]] = []
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    in_console = False
    current: tuple[int, list[str], list[str]] | None = None
    for number, line in enumerate(lines, start=1):
        if line.startswith("```"):
            in_console = line.strip() == "```console"
            current = None
            continue
        if not in_console:
            continue
        if line.startswith("$ "):
            current = None
            if line.startswith(PROMPT):
                command = re.sub(r"\s+#.*$", "", line[len(PROMPT) :])
                current = (number, shlex.split(command), [])
                found.append(current)
        elif current is not None:
            current[2].append(line)
    return found


SESSIONS = sessions()


def test_the_readme_shows_fplora_sessions() -> None:
    assert len(SESSIONS) >= 5


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's bundled example, copied so the rendered files land outside the checkout."""
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "configs", root / "configs", ignore=shutil.ignore_patterns("example", "v8"))
    shutil.copytree(REPO / "datasets", root / "datasets")
    return root


@pytest.mark.parametrize(("line", "argv", "expected"), SESSIONS, ids=[f"README:{s[0]}" for s in SESSIONS])
def test_readme_session_prints_what_the_readme_shows(
    example: Path, line: int, argv: list[str], expected: list[str]
) -> None:
    env = {**os.environ, "FPLORA_MUSUBI_PYTHON": ".venv/bin/python"}
    env.pop("FPLORA_MODELS_DIR", None)
    ran = subprocess.run(
        [sys.executable, "-m", "fplora", *argv],
        cwd=example,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    printed = (ran.stdout + ran.stderr).replace(f"{example}{os.sep}", "").splitlines()
    missing = [text for text in expected if text not in printed]
    assert not missing, f"README line {line}: not printed: {missing}\nprinted:\n" + "\n".join(printed)
