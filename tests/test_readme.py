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


def headings() -> list[tuple[int, str]]:
    """(level, text) of every Markdown heading outside fenced code blocks (a YAML `# comment` is none)."""
    found: list[tuple[int, str]] = []
    in_fence = False
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (match := re.match(r"(#{1,6}) (.+)", line)):
            found.append((len(match[1]), match[2].strip()))
    return found


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces as `-`."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def contents() -> str:
    """The README's contents: from `## Contents` to the next `##` heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^## Contents\n(.*?)^## ", text, flags=re.M | re.S)
    assert found, "README.md: no '## Contents' section — add one near the top"
    return found[1]


def test_anchor_is_githubs() -> None:
    assert anchor("Which step is best: evaluation loss, loss curves, `--lora best`") == (
        "which-step-is-best-evaluation-loss-loss-curves---lora-best"
    )
    assert anchor("Try it (no GPU needed)") == "try-it-no-gpu-needed"


def test_every_section_is_in_the_contents() -> None:
    listed = set(re.findall(r"\]\(#([^)]+)\)", contents()))
    sections = [text for level, text in headings() if level == 2 and text != "Contents"]
    missing = [text for text in sections if anchor(text) not in listed]
    assert not missing, f"README.md: sections missing from the contents near the top — add them: {missing}"


def test_every_anchor_link_names_a_heading() -> None:
    targets = {anchor(text) for _, text in headings()}
    text = (REPO / "README.md").read_text(encoding="utf-8")
    broken = sorted(set(re.findall(r"\]\(#([^)]+)\)", text)) - targets)
    assert not broken, f"README.md: links to no heading (a renamed section?) — fix the contents: {broken}"


def test_every_verb_is_in_the_contents() -> None:
    from typer.main import get_command

    from fplora.cli import app

    verbs = set(get_command(app).commands)  # type: ignore[attr-defined]
    listed = set(re.findall(r"\[`(\w+)`\]\(#", contents()))
    assert verbs <= listed, f"README.md: verbs missing from the contents' verb line: {sorted(verbs - listed)}"


def test_every_image_the_readme_shows_exists() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", text) + re.findall(r"<img [^>]*src=\"([^\"]+)\"", text)
    assert len(images) >= 2
    missing = [path for path in images if not (REPO / path).is_file()]
    assert not missing, f"README.md: images that are not in the repo: {missing}"
    no_alt = re.findall(r"!\[\]\(|<img (?![^>]*alt=\"[^\"]+\")[^>]*>", text)
    assert not no_alt, f"README.md: images without alt text: {no_alt}"
