"""One spec file read: YAML with each key's line, its `${VAR}`s expanded (`spec.variables`), and a
located problem when it cannot be read (not found, not UTF-8, a YAML mistake, clearly not a spec).

Following `extends:` and merging the files is `spec.load`'s job; this module knows one file only, so
that what a file's text says and what a chain of files means stay apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fplora.problems import Problem, UserError, display_path
from fplora.spec.source import KeyPath, Source
from fplora.spec.syntax import duplicate_key, indentation, mistyped
from fplora.spec.variables import Notes, expand, unquoted_variable_fix
from fplora.suggest import closest


@dataclass(frozen=True)
class OneFile:
    """What one file says, before the files it extends are merged in."""

    data: dict[str, Any]
    sources: dict[KeyPath, Source]  # each key's file and line
    notes: Notes  # the `${VAR}`s that made a value
    empty: set[KeyPath]  # keys written with nothing after the colon
    bare: list[Problem]  # a warning per `$NAME` written without braces, which is not expanded


def _yaml() -> Any:
    from ruamel.yaml import YAML  # imported lazily: keeps `fplora --help` fast

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def _plain(node: Any, file: Path, path: KeyPath, sources: dict[KeyPath, Source]) -> Any:
    """Turn ruamel's round-trip nodes into plain Python, recording each key's line."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            line = node.lc.key(key)[0] + 1
            child = (*path, str(key))
            sources[child] = Source(file, line)
            out[str(key)] = _plain(value, file, child, sources)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            child = (*path, index)
            sources[child] = Source(file, node.lc.item(index)[0] + 1)
            items.append(_plain(value, file, child, sources))
        return items
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


_EMPTY_VALUE = re.compile(r"^\s*(?:-\s+)?(?:[^#:]+|\"[^\"]*\"|'[^']*'):\s*(?:#.*)?$")


def _empty_keys(
    data: Any, sources: dict[KeyPath, Source], lines: list[str], path: KeyPath = ()
) -> set[KeyPath]:
    """Keys written with nothing after the colon (`data:` and then no indented keys).

    YAML reads that as null, the same as `data: null`, which in a spec that extends another drops
    what the base set. Written out, `null` is meant; left empty, it is usually keys that were
    meant to follow, or lost their indentation, so `load` warns about it."""
    found: set[KeyPath] = set()
    if not isinstance(data, dict):
        return found
    for key, value in data.items():
        here = (*path, key)
        if isinstance(value, dict):
            found |= _empty_keys(value, sources, lines, here)
        elif (
            value is None
            and (line := sources[here].line)
            and line <= len(lines)
            and _EMPTY_VALUE.match(lines[line - 1])
        ):
            found.add(here)
    return found


_NOT_SPECS = {
    ".jsonl": "a JSONL dataset, not a spec — list it under a spec's `datasets:` and give the spec",
    ".json": "JSON, not a spec — give the spec (a .yaml file), e.g. configs/v1.yaml",
    ".toml": "a TOML file (musubi-tuner's config or dataset, which fplora renders), not a spec"
    " — give the spec",
    ".txt": "a text file (prompts fplora renders, or captions), not a spec — give the spec",
}


def _not_a_spec(path: Path) -> tuple[str, str] | None:
    """(message, fix) for a file that is clearly not a spec by its name: a dataset JSONL or a
    rendered config.toml given where the spec goes reads as YAML and fails with a syntax error."""
    said = _NOT_SPECS.get(path.suffix.lower())
    if said is None or not path.is_file():
        return None
    message, fix = said.split(" — ")
    rendered = path.parent.with_suffix(".yaml")
    if path.suffix.lower() in (".toml", ".txt") and rendered.is_file():
        fix = f"give the spec it was rendered from: {display_path(rendered)}"
    elif path.suffix.lower() == ".toml":
        # a hand-written musubi-tuner config: its keys, written into a spec, are each answered by
        # check with the spec field that holds them (`spec.errors`)
        example = next(iter(specs_near(path)), None)
        fix = (
            f"give a spec{f' ({display_path(example)})' if example else ''}; to move this file's settings"
            " over, write them into one under their musubi-tuner names: check says the spec field for each"
        )
    elif path.suffix.lower() == ".jsonl" and (listing := _specs_naming(path)):
        fix = f"give the spec that lists it: {', '.join(display_path(spec) for spec in listing[:3])}"
    return f"is {message}", fix


def specs_near(path: Path) -> list[Path]:
    """Version specs in the nearest `configs/` folder at or above `path`'s folder (bases left out)."""
    for folder in [path.resolve().parent, *path.resolve().parent.parents]:
        configs = folder / "configs"
        if configs.is_dir():
            return [p for p in sorted(configs.glob("*.y*ml")) if p.stem != "base"]
    return []


def _specs_naming(jsonl: Path) -> list[Path]:
    """Specs under the nearest `configs/` folder above `jsonl` that mention its file name."""
    for folder in jsonl.resolve().parents:
        configs = folder / "configs"
        if configs.is_dir():
            found = []
            for spec in sorted(configs.glob("*.y*ml")):
                try:
                    if jsonl.name in spec.read_text(encoding="utf-8"):
                        found.append(spec)
                except (OSError, UnicodeDecodeError):
                    continue
            return found
    return []


def _missing_spec_fix(path: Path) -> str:
    """`did you mean configs/v1.yaml?` for `fplora check v1`: the name with .yaml, or under configs/."""
    names = [path.with_suffix(".yaml"), path.with_suffix(".yml")] if path.suffix == "" else []
    for folder in ("configs", "../configs"):
        for name in (path.name, f"{path.name}.yaml", f"{path.name}.yml"):
            names.append(path.parent / folder / name)
    for candidate in names:
        if candidate.is_file():
            return f"did you mean {display_path(candidate.resolve())}?"
    where = path.parent
    there = (
        sorted((p.name for p in where.glob("*.y*ml") if p.is_file()), key=_in_order) if where.is_dir() else []
    )
    if not there:
        return "check the path"
    # by stem: the shared `.yaml` made any name ending in "e" (`nope.yaml`) close to `base.yaml`
    stems = {Path(name).stem: name for name in there}
    close = stems.get(closest(path.stem, set(stems)) or "")
    if close is not None and _digits_out(close) != _digits_out(path.name):  # v9 is no typo of v8
        return f"did you mean {display_path(where / close)}?"
    shown = ", ".join(there[:8]) + (f" and {len(there) - 8} more" if len(there) > 8 else "")
    return f"{display_path(where)} holds {shown}; a new version starts as a copy of one of them"


def _in_order(name: str) -> list[object]:
    """v2 before v10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _digits_out(name: str) -> str:
    return re.sub(r"\d+", "", name)


def read_one(path: Path) -> OneFile:
    """One spec file (not a folder: `spec.load` says which specs a folder holds), or a `UserError`
    at the file, or its line, that says why it cannot be read."""
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    shown = display_path(path)
    if (wrong := _not_a_spec(path)) is not None:
        raise UserError(Problem(shown, None, "", *wrong))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(Problem(shown, None, "", "spec file not found", _missing_spec_fix(path))) from None
    except UnicodeDecodeError as exc:
        bad_line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise UserError(
            Problem(
                shown,
                bad_line,
                "",
                f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x})",
                "save the spec as UTF-8",
            )
        ) from None
    except PermissionError:
        raise UserError(
            Problem(
                shown, None, "", "cannot read it: permission denied", f"make it readable: chmod a+r {shown}"
            )
        ) from None
    except OSError as exc:
        raise UserError(Problem(shown, None, "", f"cannot read it: {exc.strerror or exc}", "")) from None
    try:
        node = _yaml().load(text)
    except MarkedYAMLError as exc:
        said = indentation(exc, text, shown) or duplicate_key(exc, text, shown) or mistyped(exc, text, shown)
        if said is not None:
            raise UserError(said) from None
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = (exc.problem or exc.context or "invalid YAML").strip()
        if "duplicate key" in reason:
            reason = reason.split(" with value")[0]
        fix = unquoted_variable_fix(text, [m.line for m in (exc.problem_mark, exc.context_mark) if m])
        raise UserError(Problem(shown, line, "", f"YAML syntax error: {reason}", fix)) from None
    except YAMLError as exc:
        raise UserError(Problem(shown, None, "", f"YAML error: {exc}", "fix the YAML")) from None
    if node is None:
        node = {}
    sources: dict[KeyPath, Source] = {(): Source(path, 1)}
    data = _plain(node, path, (), sources)
    if not isinstance(data, dict):
        raise UserError(Problem(shown, 1, "", "a spec must be a mapping of sections", "see `fplora init`"))
    data, notes, bare = expand(data, sources)
    return OneFile(data, sources, notes, _empty_keys(data, sources, text.splitlines()), bare)
