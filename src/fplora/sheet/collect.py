"""Reading a save root's infer folders into grids: version → rows, columns and each cell's images.

A folder counts when its name is the memo's (`v8-step00005000-lm1.2`, `v8-final-lm1.0`,
`v8-<file stem>-lm1.0` for a LoRA outside the run) and it holds fplora's record. A cell's image for
a prompt is the newest image of the newest run that rendered that prompt line and wrote an image
with its seed; a run that failed leaves the cell marked failed, with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fplora.musubi.names import GENERATE_SEED_RE, PROMPT_OPTION, split_prompt_line
from fplora.runs.infer_folders import parse_save_dir_name, read_record


@dataclass(frozen=True)
class Prompt:
    """A prompt as rendered into the prompt file: its text, seed and images."""

    line: str
    text: str
    seed: int | None
    image: Path | None
    controls: tuple[Path, ...]
    size: tuple[int, int] | None  # width, height asked of generate (`--w`, `--h`)


def parse_prompt(line: str) -> Prompt:
    text, options = split_prompt_line(line)
    seed = options.get(PROMPT_OPTION["seed"], [None])[-1]
    image = options.get(PROMPT_OPTION["image"], [None])[-1]
    controls = tuple(Path(c) for c in options.get(PROMPT_OPTION["control_image"], []))
    width = options.get(PROMPT_OPTION["width"], [""])[-1]
    height = options.get(PROMPT_OPTION["height"], [""])[-1]
    size = (int(width), int(height)) if width.isdigit() and height.isdigit() else None
    number = int(seed) if seed and seed.lstrip("-").isdigit() else None
    return Prompt(line, text, number, Path(image) if image else None, controls, size)


@dataclass
class Cell:
    folder: Path
    row: str  # the checkpoint, as a label: step5000, final, a file's stem
    multiplier: float
    images: dict[str, Path] = field(default_factory=dict)  # prompt line → image
    error: str = ""  # why the newest run failed, if it did

    @property
    def label(self) -> str:
        return f"{self.row} · lm{self.multiplier}"


@dataclass
class Grid:
    """One version's cells. Rows by step (then finals, then other files), columns by multiplier."""

    version: str
    root: Path
    cells: dict[tuple[str, float], Cell]
    prompts: list[Prompt]

    @property
    def rows(self) -> list[str]:
        return sorted({row for row, _ in self.cells}, key=_row_order)

    @property
    def columns(self) -> list[float]:
        return sorted({column for _, column in self.cells})


def _row_order(row: str) -> tuple[int, int, str]:
    if row.startswith("step") and row[4:].isdigit():
        return (0, int(row[4:]), row)
    return (1 if row == "final" else 2, 0, row)


def _name(folder: str) -> tuple[str, str, float] | None:
    """(version, row label, multiplier) of an infer folder's name, the step as `step5000`."""
    parsed = parse_save_dir_name(folder)
    if parsed is None:
        return None
    version, which, multiplier = parsed
    row = f"step{int(which[4:])}" if re.fullmatch(r"step\d{8}", which) else which
    return version, row, multiplier


def _fill(cell: Cell, record: dict[str, Any], prompts: dict[str, Prompt]) -> None:
    """The cell's image for each prompt line of its newest run, found in that run or an older one
    that rendered the same line (a sweep that skipped the cell left its images where they were)."""
    runs = [r for r in record.get("runs", []) if isinstance(r, dict)]
    if not runs:
        return
    newest = runs[-1]
    if newest.get("error") or newest.get("exit_code") not in (None, 0):
        cell.error = str(newest.get("error") or f"exit {newest.get('exit_code')}")
    for line in (newest.get("settings") or {}).get("prompts") or []:
        prompt = prompts.setdefault(line, parse_prompt(line))
        for run in reversed(runs):
            if line not in ((run.get("settings") or {}).get("prompts") or []):
                continue
            files = sorted((str(f) for f in run.get("files") or []), reverse=True)  # newest time flag first
            image = next(
                (
                    cell.folder / name
                    for name in files
                    if (match := GENERATE_SEED_RE.match(name))
                    and int(match[1]) == prompt.seed
                    and (cell.folder / name).is_file()
                ),
                None,
            )
            if image is not None:
                cell.images[line] = image
                break


def collect(root: Path, version: str | None = None) -> list[Grid]:
    """Every version's grid under `root` (only `version`'s when given), in version order."""
    grids: dict[str, Grid] = {}
    if not root.is_dir():
        return []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        parsed = _name(folder.name)
        if parsed is None or (version is not None and parsed[0] != version):
            continue
        try:
            record = read_record(folder)
        except ValueError:
            continue
        if record is None:
            continue
        found, row, multiplier = parsed
        grid = grids.setdefault(found, Grid(found, root, {}, []))
        known = {p.line: p for p in grid.prompts}
        cell = Cell(folder, row, multiplier)
        _fill(cell, record, known)
        grid.prompts = list(known.values())
        grid.cells[(row, multiplier)] = cell
    return [grids[name] for name in sorted(grids)]
