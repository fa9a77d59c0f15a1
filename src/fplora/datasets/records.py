"""Reading one-frame JSONL dataset records: one JSON object per line.

A record is `image_path` (the target), `caption`, and `control_path` or `control_path_0..N`
(renumbered in numeric order, as musubi-tuner does). Relative paths in a record resolve against the
JSONL file's folder; musubi-tuner itself opens them against its working directory, so when a file
has relative paths fplora hands musubi-tuner an absolute copy (see `musubi_jsonl`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fplora.musubi.names import CONTROL_KEY_RE
from fplora.problems import Problem, display_path

if TYPE_CHECKING:
    from fplora.spec.models import Spec

KNOWN_KEYS = {"image_path", "image_path_0", "caption"}


@dataclass
class Record:
    line: int
    image: Path | None
    caption: str | None
    controls: list[Path] = field(default_factory=list)
    relative: bool = False  # any path in the record was relative


@dataclass
class Records:
    jsonl: Path
    items: list[Record]
    problems: list[Problem]

    @property
    def has_relative_paths(self) -> bool:
        return any(r.relative for r in self.items)


def _path(value: object, base: str) -> tuple[Path | None, bool]:
    if not isinstance(value, str) or not value:
        return None, False
    if os.path.isabs(value):
        return Path(value), False
    return Path(os.path.normpath(os.path.join(base, value))), True


def jsonl_lines(text: str) -> list[str]:
    """The lines musubi-tuner's reader sees: a text-mode file splits on \\n, \\r and \\r\\n only.

    `str.splitlines` also splits on U+2028, U+0085 and other separators, which may sit inside a
    valid JSON caption; splitting there would report a good record as broken JSON."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_records(jsonl: Path) -> Records:
    """Parse every line; structural problems (JSON, keys, types) are returned, not raised."""
    shown = display_path(jsonl)
    problems: list[Problem] = []
    items: list[Record] = []
    try:
        text = jsonl.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = Problem(shown, None, "", "dataset JSONL file not found", "check datasets[].jsonl")
        return Records(jsonl, [], [problem])
    except (OSError, UnicodeDecodeError) as exc:
        return Records(jsonl, [], [Problem(shown, None, "", f"cannot read dataset: {exc}", "")])
    base = str(jsonl.parent)
    for number, line in enumerate(jsonl_lines(text), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(shown, number, "", f"invalid JSON: {exc.msg}", "one JSON object per line")
            )
            continue
        if not isinstance(raw, dict):
            problems.append(Problem(shown, number, "", "a record must be a JSON object", ""))
            continue
        controls: dict[int, object] = {}
        for key, value in raw.items():
            match = CONTROL_KEY_RE.match(key)
            if match:
                controls[int(match.group(1) or 0)] = value
            elif key not in KNOWN_KEYS:
                problems.append(
                    Problem(
                        shown,
                        number,
                        key,
                        "unknown record key",
                        "use image_path, caption and control_path_0..N",
                    )
                )
        image, rel = _path(raw.get("image_path", raw.get("image_path_0")), base)
        record = Record(number, image, None, relative=rel)
        if image is None:
            problems.append(
                Problem(shown, number, "image_path", "missing or not a string", "add the target image")
            )
        caption = raw.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            problems.append(
                Problem(
                    shown,
                    number,
                    "caption",
                    "missing or empty",
                    "write the caption text (musubi-tuner's JSONL reader takes it from the record;"
                    " caption_extension files are not read for JSONL datasets)",
                )
            )
        else:
            record.caption = caption
        for index in sorted(controls):
            path, rel = _path(controls[index], base)
            if path is None:
                key = f"control_path_{index}"
                problems.append(
                    Problem(shown, number, key, "not a file path", "write the control image's path")
                )
                continue
            record.controls.append(path)
            record.relative = record.relative or rel
        items.append(record)
    if not items and not problems:
        problems.append(Problem(shown, None, "", "dataset has no records", "add one JSON object per line"))
    return Records(jsonl, items, problems)


def absolute_jsonl(records: Records) -> str:
    """The JSONL text with every path absolute, for musubi-tuner (which resolves against its cwd)."""
    lines = []
    for record in records.items:
        item: dict[str, object] = {"image_path": str(record.image), "caption": record.caption}
        for index, control in enumerate(record.controls):
            item[f"control_path_{index}"] = str(control)
        lines.append(json.dumps(item, ensure_ascii=False))
    return "\n".join(lines) + "\n"


class RecordCache:
    """Reads each dataset's JSONL at most once per command."""

    def __init__(self, spec: Spec):  # a Spec: records.py itself stays below spec/
        self.spec = spec
        self._records: dict[int, Records] = {}

    def __call__(self, index: int) -> Records:
        if index not in self._records:
            self._records[index] = read_records(self.spec.datasets[index].jsonl)
        return self._records[index]
