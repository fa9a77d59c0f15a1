"""What a dataset JSONL's raw lines show that its parsed records do not.

`datasets.records.read_records` keeps what rendering needs: each record's images in control order.
musubi-tuner reads the same file differently in ways that only the lines themselves reveal
(`ImageJsonlDatasource` at the pinned commit opens it as plain UTF-8 and iterates its lines):

- it `json.loads` every line, blank ones too, and stops at the first that fails: a blank line
  anywhere (the end included), a byte-order mark before the first record, or a caption with a raw
  line break (which splits one record over two lines);
- it renames `control_path` to `control_path_0`, overwriting a `control_path_0` in the same record;
- it renumbers `control_path_N` keys in numeric order, so `control_path_0` + `control_path_2` quietly
  become control images 0 and 1, and each takes the latent index of its new position.

When the records use relative paths, musubi-tuner never sees the file: fplora hands it an absolute
copy, one record per line, without blank lines or a byte-order mark (`plan`). What would stop
musubi-tuner's reader is then a warning (the file still fails with musubi-tuner alone), else an error.
Paths written for Windows (`C:\\...`, backslashes) are warned about too: musubi-tuner runs on Linux.

The file is read a second time for this, and each record's line is scanned for its control keys;
only a line whose keys are not exactly `control_path_0..N-1` is parsed again, so a 10,000-record
dataset costs a few milliseconds more.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fplora.datasets.records import Records, jsonl_lines
from fplora.musubi.names import CONTROL_KEY_RE
from fplora.problems import Problem, display_path, plural
from fplora.spec.models import Spec
from fplora.spec.rules import windows_path

_NOT_FOUND = "dataset JSONL file not found"  # `read_records`' words for a missing file
_CANNOT_READ = "cannot read dataset"
MAX_CONTINUATION = 10
"""Lines after an unterminated string that are tried as the rest of its record."""


def unreadable(records: Records) -> bool:
    """The dataset's file could not be read at all (missing, a folder, not UTF-8, ...)."""
    return not records.items and any(
        p.line is None and p.message.startswith((_NOT_FOUND, _CANNOT_READ)) for p in records.problems
    )


def file_problem(spec: Spec, index: int, records: Records) -> Problem:
    """Why an `unreadable` dataset file could not be read, at the spec line of `datasets[i].jsonl`."""
    path = records.jsonl
    shown = display_path(path)
    evaluation = index == spec.eval_index
    key: tuple[str | int, ...] = ("eval", "jsonl") if evaluation else ("datasets", index, "jsonl")
    if path.is_dir():
        return spec.problem(
            key, f"{shown} is a folder, not a JSONL file", "name the metadata .jsonl file itself"
        )
    if not path.exists():
        where = "" if path.parent.is_dir() else f" (folder {display_path(path.parent)} does not exist)"
        beside = sorted(p.name for p in path.parent.glob("*.jsonl")) if path.parent.is_dir() else []
        if beside:  # `fplora dataset init` names its file metadata.jsonl; init's spec, metadata-v1.jsonl
            return spec.problem(
                key,
                f"{_NOT_FOUND}: {shown}; its folder holds {', '.join(beside[:5])}",
                f"name that file: jsonl: {_as_written(spec, key, path.parent / beside[0])}"
                if len(beside) == 1
                else "name one of them in jsonl:",
            )
        if moved := _moved(path):  # the dataset folder renamed after the spec named it
            return spec.problem(
                key,
                f"{_NOT_FOUND}: {shown}{where}; {display_path(moved)} has its name",
                f"renamed? name it: jsonl: {_as_written(spec, key, moved)}",
            )
        return spec.problem(
            key,
            f"{_NOT_FOUND}: {shown}{where}",
            "check the path; relative paths resolve against the folder of the spec file that writes them;"
            " not made yet? `fplora dataset init <folder of pictures>` writes one",
        )
    if not os.access(path, os.R_OK):
        return spec.problem(
            key, f"cannot read {shown}: permission denied", f"make it readable: chmod a+r {shown}"
        )
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        return spec.problem(
            key,
            f"{shown} is not UTF-8 text (line {line}: byte 0x{exc.object[exc.start]:02x}); musubi-tuner"
            " reads JSONL as UTF-8",
            "save it as UTF-8 (e.g. iconv -f cp932 -t utf-8, for a file from a Japanese Windows editor)",
        )
    except OSError:
        pass
    reason = next(p.message for p in records.problems if p.message.startswith(_CANNOT_READ))
    return spec.problem(
        key, f"cannot read {shown}: {reason.removeprefix(f'{_CANNOT_READ}: ')}", "check the file"
    )


def _moved(path: Path) -> Path | None:
    """The one file of `path`'s name in a sibling of its missing folder (datasets/dataset-v1/
    metadata-v1.jsonl when the folder became datasets/turn-v1/), else None."""
    folder = path.parent
    if folder.exists() or not folder.parent.is_dir():
        return None
    found = [f for f in folder.parent.glob(f"*/{path.name}") if f.is_file()]
    return found[0] if len(found) == 1 else None


def _as_written(spec: Spec, key: tuple[str | int, ...], path: Path) -> str:
    """`path` as the spec file that wrote `key` would write it: relative to that file's folder."""
    writer = spec.written_in(key)
    if writer is None:
        return str(path)
    return Path(os.path.relpath(path, writer.parent)).as_posix()


def not_jsonl_problem(spec: Spec, index: int, records: Records, lines: list[str] | None) -> Problem | None:
    """One problem, at the spec line of `datasets[i].jsonl`, for a file none of whose lines is even
    meant as a JSON object (another file named by mistake: the YAML snippet `fplora dataset init`
    writes beside its metadata.jsonl, a CSV of captions), instead of an invalid-JSON error per line.
    A file of broken records (`{'image_path': ...}`) keeps its errors: they say what to fix."""
    if records.items or not lines or any(line.lstrip().startswith("{") for line in lines):
        return None
    key: tuple[str | int, ...] = (
        ("eval", "jsonl") if index == spec.eval_index else ("datasets", index, "jsonl")
    )
    return spec.problem(
        key,
        f"{display_path(records.jsonl)} is not a JSONL dataset: none of its lines is a JSON record",
        "name the dataset's .jsonl file (`fplora dataset init` writes metadata.jsonl; the"
        " fplora-dataset.yaml beside it is the snippet for the spec)",
    )


def read_lines(path: Path) -> list[str] | None:
    """The file's lines as `read_records` numbers them, or None when it cannot be read (again)."""
    try:
        return jsonl_lines(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def _string_with_break(value: object) -> bool:
    return isinstance(value, str) and ("\n" in value or "\r" in value)


def _json_problem(shown: str, number: int, lines: list[str]) -> tuple[Problem, int]:
    """The full invalid-JSON problem of line `number`, and the last line its record runs on to
    (itself unless a raw line break in a string split the record over several lines)."""
    try:
        json.loads(lines[number - 1])
    except json.JSONDecodeError as exc:
        reason, column = exc.msg, exc.colno
    else:  # the file changed since it was read: keep the reader's words
        return Problem(shown, number, "", "invalid JSON", "one JSON object per line"), number
    # json's own message without its "line 1 column N (char N-1)": the line is the JSONL line
    message = f"invalid JSON: {reason}{'' if reason.endswith(' at') else ' at'} col {column}"
    if reason.startswith("Unterminated string"):
        for end in range(number + 1, min(number + MAX_CONTINUATION, len(lines)) + 1):
            try:
                joined = json.loads("\n".join(lines[number - 1 : end]), strict=False)
            except ValueError:
                continue
            if not isinstance(joined, dict):
                break
            key = next((k for k, v in joined.items() if _string_with_break(v)), "")
            what = f"the {key}" if key else "a string"
            onto = f"line {end}" if end == number + 1 else f"lines {number + 1}-{end}"
            return (
                Problem(
                    shown,
                    number,
                    key,
                    f"{message}: {what} has a raw line break, so the record runs on into {onto}",
                    "write the line break as \\n (one JSON object per line)",
                ),
                end,
            )
    return Problem(shown, number, "", message, "one JSON object per line"), number


def json_problems(records: Records, lines: list[str] | None) -> tuple[list[Problem], set[int]]:
    """The reader's problems, with each invalid-JSON line's full message (json's own, `col N`), and
    none for the lines a record broken by a raw line break runs on into: they are the same mistake.
    Those lines are returned too."""
    shown = display_path(records.jsonl)
    problems: list[Problem] = []
    continued: set[int] = set()
    for problem in records.problems:
        if problem.line in continued:
            continue
        number = problem.line or 0
        if lines is not None and 0 < number <= len(lines) and problem.message.startswith("invalid JSON"):
            problem, end = _json_problem(shown, number, lines)
            continued.update(range(number + 1, end + 1))
        problems.append(problem)
    return problems, continued


_COPY_NOTE = "fplora hands musubi-tuner a copy without {it} (the records use relative paths)"


def _hidden_by_copy(records: Records) -> bool:
    """musubi-tuner reads fplora's rewritten copy of this file, not the file itself (`plan`)."""
    return records.has_relative_paths


def blank_line_problems(records: Records, lines: list[str] | None, skip: set[int]) -> list[Problem]:
    """Blank lines: musubi-tuner's reader `json.loads` every line of the file, so a blank one (in the
    middle or at the end) stops it with a JSON error. That is an error when musubi-tuner reads the
    file itself, which it does when every path is absolute; with relative paths fplora hands it an
    absolute copy without blank lines, so the file only fails elsewhere: a warning. Lines in `skip`
    belong to a record already reported as broken."""
    if lines is None or not records.items:
        return []
    blank = [n for n, line in enumerate(lines, start=1) if not line.strip() and n not in skip]
    if not blank:
        return []
    more = f" (and {len(blank) - 1} more)" if len(blank) > 1 else ""
    message = f"blank line{more}: musubi-tuner parses every line as JSON and stops at a blank one"
    severity = "error"
    if _hidden_by_copy(records):
        message += "; " + _COPY_NOTE.format(it="them")
        severity = "warning"
    return [Problem(display_path(records.jsonl), blank[0], "", message, "delete the blank lines", severity)]


def bom_problems(records: Records) -> list[Problem]:
    """A byte-order mark before the first record (Windows Notepad's "UTF-8 with BOM"): musubi-tuner
    opens the file as plain UTF-8, so json reads the mark as part of the first line and fails
    ("Unexpected UTF-8 BOM"). An error when musubi-tuner reads the file itself, else a warning."""
    if not records.bom:
        return []
    message = "starts with a byte-order mark (BOM), which musubi-tuner's JSONL reader fails on"
    severity = "error"
    if records.items and _hidden_by_copy(records):
        message += "; " + _COPY_NOTE.format(it="it")
        severity = "warning"
    return [Problem(display_path(records.jsonl), 1, "", message, "save it as UTF-8 without BOM", severity)]


def windows_path_problems(records: Records) -> list[Problem]:
    """One warning per dataset for record paths written for Windows: musubi-tuner runs on Linux,
    where `\\` is an ordinary character of a file name and `C:` a folder name, so such a path names
    a file that is not there (check also reports each one as not found)."""
    found = [
        (record.line, key, shown)
        for record in records.items
        for key, path in (("image_path", record.image_path), *_control_keys_of(record.control_paths))
        if path is not None and (shown := windows_path(path)) is not None
    ]
    if not found:
        return []
    line, key, shown = found[0]
    lines = {number for number, _, _ in found}
    more = f" (and {plural(len(lines) - 1, 'more record')})" if len(lines) > 1 else ""
    if ":" in shown:  # a drive: the file is on another machine
        fix = "copy the images to this machine and write their paths with '/', relative to the JSONL's folder"
    else:
        fix = f"write '{shown.replace(chr(92), '/')}': paths use '/' on Linux"
    return [
        Problem(
            display_path(records.jsonl),
            line,
            key,
            f"'{shown}' looks like a Windows path{more}: musubi-tuner runs on Linux, where '\\' is part"
            " of a file name",
            fix,
            "warning",
        )
    ]


def _control_keys_of(controls: list[str]) -> list[tuple[str, str]]:
    return [(f"control_path_{index}", path) for index, path in enumerate(controls)]


def _needles(count: int, cache: dict[int, tuple[str, ...]]) -> tuple[str, ...]:
    needles = cache.get(count)
    if needles is None:
        needles = cache[count] = tuple(f'"control_path_{i}"' for i in range(count))
    return needles


def _control_keys(shown: str, number: int, record: dict[str, object]) -> list[Problem]:
    """Problems of one record's control keys: two keys for one image, or numbers with gaps."""
    by_index: dict[int, list[str]] = {}
    for key in record:
        match = CONTROL_KEY_RE.match(key)
        if match:
            by_index.setdefault(int(match.group(1) or 0), []).append(key)
    problems = []
    for index, keys in sorted(by_index.items()):
        if len(keys) < 2:
            continue
        keys.sort(key=lambda key: (key != "control_path", key))
        if keys[0] == "control_path":
            dropped = " and ".join(keys[1:])
            kept = f"musubi-tuner uses control_path and drops {dropped}"
        else:
            kept = "musubi-tuner renumbers or drops all but one of them"
        problems.append(
            Problem(
                shown,
                number,
                keys[0],
                f"{' and '.join(keys)} both give control image {index}: {kept}",
                "remove all but one",
            )
        )
    indices = sorted(by_index)
    for position, index in enumerate(indices):
        if index != position:
            key = by_index[index][0]
            missing = ", ".join(f"control_path_{i}" for i in range(position, index))
            last = len(indices) - 1
            problems.append(
                Problem(
                    shown,
                    number,
                    key,
                    f"no {missing} before it: musubi-tuner renumbers control images in order,"
                    f" so {key} would be control image {position}",
                    f"number the control images control_path_0..{last} without gaps"
                    if last
                    else "name it control_path_0",
                )
            )
            break
    return problems


def control_key_problems(records: Records, lines: list[str] | None) -> list[Problem]:
    """Records whose control keys musubi-tuner would merge or renumber (see the module's notes).

    A line holding exactly `"control_path_0"`..`"control_path_{n-1}"` for its n control images is
    fine without parsing it again; any other is parsed and its keys looked at.
    """
    if lines is None:
        return []
    shown = display_path(records.jsonl)
    cache: dict[int, tuple[str, ...]] = {}
    problems: list[Problem] = []
    for record in records.items:
        if record.line > len(lines):
            continue
        line = lines[record.line - 1]
        count = len(record.control_paths)
        if line.count('"control_path') == count and all(n in line for n in _needles(count, cache)):
            continue
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        if isinstance(raw, dict):
            problems.extend(_control_keys(shown, record.line, raw))
    return problems
