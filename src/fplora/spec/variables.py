"""`${VAR}` and `${VAR:-default}` in spec values: expanded from the environment, each expansion noted.

Why a module of its own: expansion is a pass over the values a file wrote, after they are read and
before files are merged, with rules of its own (the shell's `:-`, an unset or empty variable is an
error naming it, a credential's variable is left for `spec.secrets` to refuse, `$NAME` without
braces is a warning) and notes that later errors quote (`(from ${STEPS} = 'abc')`).
`spec.read` reads YAML and calls `expand` once per file; `spec.load` follows `extends:`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from fplora.problems import Problem, UserError, display_path
from fplora.spec.secrets import is_credential
from fplora.spec.source import KeyPath, Source, dotted

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Notes = dict[KeyPath, list[str]]
"""Each expanded value's `${VAR}`s, by key path: `${STEPS} = '100'`, `${W:-512}: W is not set`."""


def expand(
    data: dict[str, Any], sources: dict[KeyPath, Source]
) -> tuple[dict[str, Any], Notes, list[Problem]]:
    """One file's values with every `${VAR}` expanded, the notes of each expansion and a warning per
    bare `$NAME` (found on the values as written, before expansion); a variable that must be set and
    is not raises one problem each, at its line."""
    problems: list[Problem] = []
    notes: Notes = {}
    bare: list[Problem] = []
    _bare_variables(data, (), sources, bare)  # on the text as written, before `${VAR}`s expand
    data = _expand(data, (), sources, problems, notes)
    if problems:
        raise UserError(problems)
    return data, notes, bare


def _expand(
    value: Any,
    path: KeyPath,
    sources: dict[KeyPath, Source],
    problems: list[Problem],
    notes: dict[KeyPath, list[str]],
) -> Any:
    """Expand `${VAR}` and `${VAR:-default}` in every string, as the shell does: the default when VAR
    is unset or empty; a bare `${VAR}` must be set and non-empty (`${VAR:-}` allows empty). Each
    expansion is noted by key path, so that a later error about the value can name the variable."""
    if isinstance(value, dict):
        return {k: _expand(v, (*path, k), sources, problems, notes) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), sources, problems, notes) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found:
            notes.setdefault(path, []).append(f"{match.group(0)} = {found!r}")
            return found
        state = "not set" if found is None else "empty"
        if default is not None or _credential(name, path):
            # a credential's key or variable is refused as such (spec/secrets.py), set or not:
            # "export it" would only lead to that refusal next
            notes.setdefault(path, []).append(f"{match.group(0)}: {name} is {state}")
            return default if default is not None else match.group(0)
        src = sources[path]
        problems.append(
            Problem(
                display_path(src.file),
                src.line,
                dotted(path),
                f"environment variable {name} is {state}",
                f"export {name}=..., or write ${{{name}:-default}}",
            )
        )
        return match.group(0)

    return _VAR.sub(substitute, value)


def _credential(variable: str, path: KeyPath) -> bool:
    """Whether a `${VAR}` is a credential's, by the variable's name or any key above it."""
    return is_credential(variable) or any(isinstance(part, str) and is_credential(part) for part in path)


_ANY_VAR = re.compile(r"\$\{[^}\s]*\}?")
_BARE_VAR = re.compile(r"(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")


def _bare_variables(value: Any, path: KeyPath, sources: dict[KeyPath, Source], found: list[Problem]) -> None:
    """A warning for each `$NAME` without braces: fplora expands only `${NAME}`, so `$HOME/models`
    stays literal text and names a folder `$HOME` under the spec's folder."""
    if isinstance(value, dict):
        for key, item in value.items():
            _bare_variables(item, (*path, key), sources, found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _bare_variables(item, (*path, index), sources, found)
    elif isinstance(value, str) and (names := _BARE_VAR.findall(value)):
        source = sources.get(path) or Source(Path(), None)
        said = ", ".join(f"${name}" for name in dict.fromkeys(names))
        braced = ", ".join(f"${{{name}}}" for name in dict.fromkeys(names))
        found.append(
            Problem(
                display_path(source.file),
                source.line,
                dotted(path),
                f"{said} {'is' if len(set(names)) == 1 else 'are'} not expanded: fplora expands only"
                f" {braced}, so it stays literal text",
                f"write {_BARE_VAR.sub(lambda m: '${' + m.group(1) + '}', value)!r}"
                if len(value) <= 80
                else f"write {braced}",
                "warning",
            )
        )


def unquoted_variable_fix(text: str, lines: list[int]) -> str:
    """The fix for a YAML syntax error: quoting the `${VAR}` on the line, when there is one (in
    `[...]` and `{...}` an unquoted `{` opens a mapping), else just "fix the YAML"."""
    all_lines = text.splitlines()
    for index in lines:
        if index < len(all_lines) and (found := _ANY_VAR.search(all_lines[index])):
            return f'quote it: "{found.group(0)}" (inside [...] or {{...}}, an unquoted {{ starts a mapping)'
    return "fix the YAML"
