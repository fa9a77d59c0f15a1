"""Reading one-frame JSONL dataset records: one JSON object per line.

A record is `image_path` (the target), `caption`, and `control_path` or `control_path_0..N`
(renumbered in numeric order, as musubi-tuner does). Relative paths in a record resolve against the
JSONL file's folder; musubi-tuner itself opens them against its working directory, so when a file
has relative paths fplora hands musubi-tuner an absolute copy (see `musubi_jsonl`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fplora.musubi.names import CONTROL_KEY_RE
from fplora.problems import Problem, display_path

if TYPE_CHECKING:
    from fplora.spec.models import Spec

KNOWN_KEYS = {"image_path", "image_path_0", "caption"}
BOM = "\ufeff"
"""A UTF-8 byte-order mark, as text: Windows editors put one before the first record."""


class Record:
    """One parsed record. Its paths are kept as text (`image_path`, `control_paths`), and `image` and
    `controls` are `Path` views made on first use: a 10,000-record dataset names 30,000 paths, and
    building a `Path` for each costs more than the rest of reading the file, while `check` needs only
    the text."""

    __slots__ = ("_controls", "_image", "caption", "control_paths", "image_path", "line", "relative")

    def __init__(
        self,
        line: int,
        image: Path | str | None,
        caption: str | None,
        controls: list[Path] | list[str] | None = None,
        relative: bool = False,  # any path in the record was relative
    ) -> None:
        self.line = line
        self.image_path = None if image is None else os.fspath(image)
        self.caption = caption
        self.control_paths = [os.fspath(control) for control in controls or ()]
        self.relative = relative
        self._image: Path | None = None
        self._controls: list[Path] | None = None

    @property
    def image(self) -> Path | None:
        if self._image is None and self.image_path is not None:
            self._image = Path(self.image_path)
        return self._image

    @property
    def controls(self) -> list[Path]:
        if self._controls is None or len(self._controls) != len(self.control_paths):
            self._controls = [Path(control) for control in self.control_paths]
        return self._controls

    def _key(self) -> tuple[object, ...]:
        return (self.line, self.image_path, self.caption, self.control_paths, self.relative)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it replaces

    def __repr__(self) -> str:
        return (
            f"Record(line={self.line!r}, image={self.image_path!r}, caption={self.caption!r},"
            f" controls={self.control_paths!r}, relative={self.relative!r})"
        )


@dataclass
class Records:
    jsonl: Path
    items: list[Record]
    problems: list[Problem]
    bom: bool = False  # the file starts with a UTF-8 byte-order mark (`check.jsonl` says what to do)

    @property
    def has_relative_paths(self) -> bool:
        return any(r.relative for r in self.items)


def _path(value: object, base: str) -> tuple[str | None, bool]:
    """A record's path value as the text `str(Path(...))` gives, and whether it was relative.

    Relative values join the JSONL's folder and are normalised (`os.path.normpath` already gives what
    `Path` would). An absolute value is kept as `Path` spells it: the text as written unless it holds
    what `Path` drops (`//`, `/./`, a trailing `/` or `/.`), which only then costs a `Path`."""
    if not isinstance(value, str) or not value:
        return None, False
    if value.startswith("/"):
        if "//" in value or "/./" in value or value.endswith(("/", "/.")):
            return str(Path(value)), False
        return value, False
    if os.path.isabs(value):
        return str(Path(value)), False
    return os.path.normpath(os.path.join(base, value)), True


def jsonl_lines(text: str) -> list[str]:
    """The lines musubi-tuner's reader sees: a text-mode file splits on \\n, \\r and \\r\\n only.

    `str.splitlines` also splits on U+2028, U+0085 and other separators, which may sit inside a
    valid JSON caption; splitting there would report a good record as broken JSON."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


_CONTROL_WORDS = re.compile(
    r"^(?:control|ctrl|cond|condition)[_-]?(?:image|img|path|file)?s?(?:[_-]?(\d+))?$"
)


_SAME_AS = {
    "image_path": ("image", "img", "target", "target_image", "target_path", "path", "file"),
    "caption": ("text", "prompt", "captions", "caption_text", "description"),
}


def _unknown_key_fix(key: str) -> str:
    """What to write instead of an unknown record key: the record key it most likely means.

    Control images are where people guess (`control_image_0`, `control_0`, `ctrl_path_1`): any key
    that names a control image, with its number kept, maps to `control_path_N`. Other keys get a
    known key when they are a common other name for it or a near spelling; the cutoff is high so
    that `mask_path` is not offered `image_path`."""
    lower = key.lower()
    match = _CONTROL_WORDS.match(lower)
    if match:
        return f"did you mean 'control_path_{match.group(1) or 0}'?"
    for known, names in _SAME_AS.items():
        if lower in names:
            return f"did you mean '{known}'?"
    close = difflib.get_close_matches(lower, ["image_path", "caption"], n=1, cutoff=0.8)
    if close:
        return f"did you mean '{close[0]}'?"
    return "use image_path, caption and control_path_0..N"


def _caption_problem(caption: object) -> tuple[str, str]:
    """(message, fix) for a record's caption that is not usable text: absent, empty, or a JSON value
    of another type (`"caption": 42` is there, just not text)."""
    if caption is None or isinstance(caption, str):
        return (
            "empty" if isinstance(caption, str) else "missing",
            "write the caption text (musubi-tuner's JSONL reader takes it from the record;"
            " caption_extension files are not read for JSONL datasets)",
        )
    written = json.dumps(caption, ensure_ascii=False)
    if isinstance(caption, int | float) and not isinstance(caption, bool):
        return f"should be text, not the number {written}", f'quote it: "caption": "{written}"'
    kind = {bool: "true/false", list: "a list", dict: "an object"}.get(type(caption), "not text")
    return f"should be text, not {kind}", "write the caption as one JSON string"


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
    # Read past a byte-order mark, so that one invisible character does not hide the first record's
    # real problems behind json's "Unexpected UTF-8 BOM"; `check.jsonl` reports the mark itself.
    bom = text.startswith(BOM)
    base = str(jsonl.parent)
    for number, line in enumerate(jsonl_lines(text.removeprefix(BOM)), start=1):
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
                problems.append(Problem(shown, number, key, "unknown record key", _unknown_key_fix(key)))
        image, rel = _path(raw.get("image_path", raw.get("image_path_0")), base)
        record = Record(number, image, None, relative=rel)
        if image is None:
            problems.append(
                Problem(shown, number, "image_path", "missing or not a string", "add the target image")
            )
        caption = raw.get("caption")
        if isinstance(caption, str) and caption.strip():
            record.caption = caption
        else:
            problems.append(Problem(shown, number, "caption", *_caption_problem(caption)))
        for index in sorted(controls):
            path, rel = _path(controls[index], base)
            if path is None:
                key = f"control_path_{index}"
                problems.append(
                    Problem(shown, number, key, "not a file path", "write the control image's path")
                )
                continue
            record.control_paths.append(path)
            record.relative = record.relative or rel
        items.append(record)
    if not items and not problems:
        problems.append(Problem(shown, None, "", "dataset has no records", "add one JSON object per line"))
    return Records(jsonl, items, problems, bom)


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
