"""YAML syntax errors said in a spec author's words: which line, what about its indentation is
wrong, and which key to line it up with; and the everyday slips whose parser message lands on a
later line than the mistake (a key without its `: `, a `{` or `[` left open) or names no fix (a tab).

ruamel.yaml reports the parser's view ("expected <block end>, but found '<block mapping start>'",
"mapping values are not allowed here"); its problem mark (where it stopped) and context mark (the
block it was reading) say enough, together with the text, to name the keys above the line.
"""

from __future__ import annotations

import re
from typing import Any

from fplora.problems import Problem, plural

_KEY = re.compile(r"^(\s*)(?:-\s+)?([^#\s][^:#]*?):(?:\s|$)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _meaningful(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _spaces(count: int) -> str:
    return plural(count, "space")


def _shown(line: str, *, whole: bool = False) -> str:
    """`rank:` for a key line, else (or when `whole`) the line's text, shortened."""
    if not whole and (found := _KEY.match(line)) is not None:
        return f"`{found.group(2).strip()}:`"
    text = line.strip()
    return f"`{text if len(text) <= 30 else text[:27] + '...'}`"


def _levels_above(lines: list[str], index: int) -> list[tuple[int, int]]:
    """(indentation, line index) of the blocks open above line `index`: the nearest line above, then
    the nearest above that one indented less, and so on to column 0 — where a new line may align."""
    levels: list[tuple[int, int]] = []
    for above in range(index - 1, -1, -1):
        line = lines[above]
        if not _meaningful(line):
            continue
        indent = _indent(line)
        if not levels or indent < levels[-1][0]:
            levels.append((indent, above))
        if indent == 0:
            break
    return levels


def _previous(lines: list[str], index: int) -> int | None:
    for above in range(index - 1, -1, -1):
        if _meaningful(lines[above]):
            return above
    return None


def indentation(exc: Any, text: str, shown: str) -> Problem | None:
    """An indentation mistake of file `shown` in the user's words, or None for other syntax errors."""
    problem, mark = (exc.problem or ""), exc.problem_mark
    if mark is None:
        return None
    lines = text.splitlines()
    index = mark.line
    if index >= len(lines):
        return None
    here = lines[index]
    column = _indent(here)
    if "expected <block end>" in problem:
        if problem.endswith("'-'"):
            owner = exc.context_mark.line if exc.context_mark else None
            under = _owner(lines, owner) if owner is not None else None
            where = (
                f" among the keys under {_shown(lines[under])} (line {under + 1})"
                if under is not None
                else ""
            )
            return _said(
                shown,
                index + 1,
                f"a list item {_shown(here, whole=True)}{where}:"
                " a block holds either keys or `- ` items, not both",
                "put the items under a key of their own (that key, then the items indented below it)",
            )
        levels = _levels_above(lines, index)
        more = [(i, at) for i, at in levels if i > column]
        less = [(i, at) for i, at in levels if i < column]
        if not more or not less:
            return None
        (deeper, deeper_at), (shallower, shallower_at) = more[-1], less[0]
        return _said(
            shown,
            index + 1,
            f"{_shown(here)} is indented {_spaces(column)}, which lines it up with no key above"
            f" ({_shown(lines[shallower_at])} on line {shallower_at + 1} is at {shallower},"
            f" {_shown(lines[deeper_at])} on line {deeper_at + 1} at {deeper})",
            f"indent it {deeper} to put it beside {_shown(lines[deeper_at])},"
            f" or {shallower} to put it beside {_shown(lines[shallower_at])}",
        )
    if problem == "mapping values are not allowed here":
        above = _previous(lines, index)
        key = _KEY.match(here)
        said = _colon_missing_above(lines, above, index, shown) if above is not None and key else None
        if said is not None:
            return said
        if (
            above is None
            or key is None
            or mark.column != key.end(2)
            or column <= _indent(lines[above])
            or (found := _KEY.match(lines[above])) is None
            or not lines[above][found.end() :].split("#")[0].strip()
        ):
            return _said(
                shown,
                index + 1,
                "a value holds ': ', which YAML reads as another key",
                'quote the value, e.g. key: "a: b"',
            )
        return _said(
            shown,
            index + 1,
            f"{_shown(here)} is indented more than the key above it expects:"
            f" {_shown(lines[above])} (line {above + 1}) already has a value, so nothing can go under it",
            f"align it with {_shown(lines[above])} ({_spaces(_indent(lines[above]))})",
        )
    return None


def _content_column(line: str) -> int:
    """Where a line's content starts: after its indentation and, for a list item, its `- `."""
    found = re.match(r"\s*(?:-\s+)?", line)
    return found.end() if found else 0


def _colon_missing_above(lines: list[str], above: int, index: int, shown: str) -> Problem | None:
    """`max_train_steps 200` (or `max_train_steps:200`) on the line above a key at the same column:
    YAML reads the two lines as one text that runs into the second key's colon, and the parser's
    complaint lands on the line that is right. Say the line above, which is wrong."""
    if _KEY.match(lines[above]) or _content_column(lines[above]) != _content_column(lines[index]):
        return None
    return colon_missing(lines[above], shown, above + 1)


KEY_WITHOUT_COLON = re.compile(r"^(-\s+)?([A-Za-z_][\w.-]*)(?::(?=\S)|\s+)(\S.*)$")
"""A key and its value without the `: ` between them (`max_train_steps 200`, `max_train_steps:200`,
after a list item's `- `): groups dash, key, value. The one spelling of that slip, for the YAML
parser's errors here and for a section that YAML read as text (`errors`)."""


def colon_missing(line: str, shown: str, number: int | None) -> Problem:
    """A key written without the `: ` YAML needs after it, at line `number` of file `shown`."""
    text = line.split(" #")[0].strip()
    found = KEY_WITHOUT_COLON.match(text)
    fix = (
        f"write `{found.group(1) or ''}{found.group(2)}: {found.group(3)}`"
        if found
        else "put ': ' between the key and its value"
    )
    said = f"YAML syntax error: `{text}` has no ': ' after its key, so YAML reads it as text"
    return Problem(shown, number, "", said, fix)


_TAB = "found character '\\t' that cannot start any token"
_FLOW = {"while parsing a flow mapping": ("{", "}"), "while parsing a flow sequence": ("[", "]")}


def mistyped(exc: Any, text: str, shown: str) -> Problem | None:
    """The other everyday slips, said where they are: a key without its colon as the last line of a
    block (the parser stops on the next line, or past the end of the file), a tab in the
    indentation, and a `{`/`[` left open (the parser stops on a later line)."""
    problem, mark, start = (exc.problem or ""), exc.problem_mark, exc.context_mark
    lines = text.splitlines()
    if problem == "could not find expected ':'" and start is not None and start.line < len(lines):
        return colon_missing(lines[start.line], shown, start.line + 1)
    if problem == _TAB and mark is not None:
        return Problem(
            shown,
            mark.line + 1,
            "",
            "YAML syntax error: a tab in the indentation (YAML indents with spaces only)",
            "replace the tab with spaces",
        )
    brackets = _FLOW.get(exc.context or "")
    if (
        brackets
        and start is not None
        and mark is not None
        and mark.line > start.line < len(lines)
        and brackets[1] not in lines[start.line][start.column :]
    ):
        return Problem(
            shown,
            start.line + 1,
            "",
            f"YAML syntax error: the `{brackets[0]}` opened here is not closed",
            f"end it with `{brackets[1]}` on this line",
        )
    return None


def _owner(lines: list[str], first_key: int) -> int | None:
    """The key a block starting at line index `first_key` belongs to: the nearest line above
    indented less."""
    column = _indent(lines[first_key])
    for above in range(first_key - 1, -1, -1):
        if _meaningful(lines[above]) and _indent(lines[above]) < column:
            return above
    return None


def _said(shown: str, line: int, message: str, fix: str) -> Problem:
    return Problem(shown, line, "", f"YAML indentation: {message}", fix)


_QUOTED_KEY = re.compile(r'found duplicate key "(.*?)" with value')


def duplicate_key(exc: Any, text: str, shown: str) -> Problem | None:
    """A key written twice in one mapping, naming both lines: the first and the repeat."""
    said = _QUOTED_KEY.match(exc.problem or "")
    mark, start = exc.problem_mark, exc.context_mark
    if said is None or mark is None:
        return None
    name, lines = said.group(1), text.splitlines()
    first = None
    begin = start.line if start is not None else 0
    for index in range(begin, min(mark.line + 1, len(lines))):
        found = _KEY.match(lines[index])
        if found and found.group(2).strip().strip("\"'") == name and len(found.group(1)) == mark.column:
            first = index
            break
    path = [name]
    if mark.line < len(lines):
        above = _owner(lines, mark.line)
        while above is not None:
            if (found := _KEY.match(lines[above])) is not None:
                path.insert(0, found.group(2).strip())
            above = _owner(lines, above)
    where = (
        f"first written on line {first + 1}"
        if first is not None and first != mark.line
        else "written twice on this line"
    )
    return Problem(
        shown,
        mark.line + 1,
        ".".join(path),
        f"duplicate key, {where}; YAML allows a key once per mapping",
        f"merge the two `{name}:` into one, keeping what both hold",
    )
