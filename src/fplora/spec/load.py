"""Reading spec files: YAML with line numbers and `extends:` chains, each file's `${VAR}`s expanded
(`spec.variables`) before the files are merged.

The result is a plain mapping plus a source map (key path → file and line, `spec.source`), so that
every later error, from Pydantic or from a file check, can point at the line the user wrote. Loading
knows nothing of the spec's fields; validation is `spec.models`' job.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fplora.problems import Problem, UserError, display_path, plural
from fplora.spec.source import KeyPath, Loaded, Source
from fplora.spec.syntax import duplicate_key, indentation
from fplora.spec.variables import Notes, expand, unquoted_variable_fix
from fplora.suggest import closest


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
    elif path.suffix.lower() == ".jsonl" and (listing := _specs_naming(path)):
        fix = f"give the spec that lists it: {', '.join(display_path(spec) for spec in listing[:3])}"
    return f"is {message}", fix


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
    return "check the path"


DATASET_SNIPPET = "fplora-dataset.yaml"  # `fplora dataset init`'s snippet for a spec: not a spec


def natural(path: Path) -> tuple[object, ...]:
    """Sort key that puts v2 before v10: digit runs compare as numbers."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.lower())
        for part in re.split(r"(\d+)", path.name)
        if part
    )


def experiments_in(folder: Path) -> list[Path]:
    """Specs in `folder` that no other spec there extends (a base is not an experiment), nor the
    dataset snippet, in natural order (v2 before v10). A spec that does not load is still a
    candidate: naming it is how its errors get seen."""
    specs = sorted(
        (p for p in folder.glob("*.y*ml") if p.is_file() and p.name != DATASET_SNIPPET), key=natural
    )
    loads: list[Loaded] = []
    for spec in specs:
        try:
            loads.append(load(spec))
        except UserError:
            continue
    bases = extended(loads)
    return [s for s in specs if s.resolve() not in bases]


def extended(loads: Iterable[Loaded]) -> set[Path]:
    """The files these loaded specs extend, resolved: bases, which are not experiments."""
    return {base.resolve() for loaded in loads for base in loaded.chain[1:]}


def _read_one(
    path: Path,
) -> tuple[dict[str, Any], dict[KeyPath, Source], Notes, set[KeyPath], list[Problem]]:
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    shown = display_path(path)
    if (wrong := _not_a_spec(path)) is not None:
        raise UserError(Problem(shown, None, "", *wrong))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(Problem(shown, None, "", "spec file not found", _missing_spec_fix(path))) from None
    except IsADirectoryError:
        folder = path / "configs" if (path / "configs").is_dir() else path
        specs = [display_path(p) for p in experiments_in(folder)]
        more = f" (and {len(specs) - 5} more)" if len(specs) > 5 else ""
        fix = (
            f"name a spec file in it: {', '.join(specs[:5])}{more}" if specs else "name a spec file (a .yaml)"
        )
        raise UserError(Problem(shown, None, "", "is a folder, not a spec file", fix)) from None
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
        if (said := indentation(exc, text, shown) or duplicate_key(exc, text, shown)) is not None:
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
    return data, sources, notes, _empty_keys(data, sources, text.splitlines()), bare


def _merge(base: Any, over: Any) -> Any:
    """Deep merge: mappings merge key by key, anything else (lists included) is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return over


def _drop_sources_below(sources: dict[KeyPath, Any], prefix: KeyPath) -> None:
    for key in [k for k in sources if len(k) > len(prefix) and k[: len(prefix)] == prefix]:
        del sources[key]


def _merge_sources(base: dict[KeyPath, Source], over: dict[KeyPath, Source], data: dict) -> dict:
    merged = dict(base)
    # a replaced list or scalar forgets the base's lines below it
    for key in over:
        if key and not isinstance(_get(data, key), dict):
            _drop_sources_below(merged, key)
    merged.update(over)
    return merged


def _merge_notes(base: Notes, over_sources: dict[KeyPath, Source], over: Notes, data: dict) -> Notes:
    """A base's `${VAR}` notes, less those of values the child replaced, plus the child's."""
    merged = dict(base)
    for key in over_sources:
        if key:
            merged.pop(key, None)
            if not isinstance(_get(data, key), dict):
                _drop_sources_below(merged, key)
    merged.update(over)
    return merged


def _get(data: Any, key: KeyPath) -> Any:
    for part in key:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _emptied(
    empty: set[KeyPath], base: dict[str, Any], base_sources: dict[KeyPath, Source]
) -> list[tuple[KeyPath, str, str]]:
    """(key path, message, fix) for each key the child left empty where its bases set a section or
    a list: the empty value drops all of it, which is rarely what a blank `data:` line meant."""
    found = []
    for key_path in sorted(empty, key=lambda p: tuple(str(part) for part in p)):
        value = _get(base, key_path)
        if isinstance(value, dict) and value:
            what = ", ".join(str(k) for k in value)
        elif isinstance(value, list) and value:
            what = f"its {plural(len(value), 'entry', 'entries')}"
        else:
            continue
        source = base_sources.get(key_path)
        base_name = display_path(source.file) if source else "the base spec"
        found.append(
            (
                key_path,
                f"left empty, which drops what {base_name} set under it: {what}",
                "indent the keys you meant under it, delete the line to keep the base's,"
                f" or write `{key_path[-1]}: null` to drop them on purpose",
            )
        )
    return found


def _nulled(
    data: Any, base: dict[str, Any], base_sources: dict[KeyPath, Source], path: KeyPath = ()
) -> dict[KeyPath, tuple[Any, Source]]:
    """Keys `data` sets to null where `base` has a value: what the null takes away and where that
    was written, so that a message can say "configs/base.yaml:40 wrote 20"."""
    found: dict[KeyPath, tuple[Any, Source]] = {}
    if not isinstance(data, dict):
        return found
    for key, value in data.items():
        here = (*path, key)
        if isinstance(value, dict):
            found.update(_nulled(value, base, base_sources, here))
        elif value is None and (was := _get(base, here)) is not None and here in base_sources:
            found[here] = (was, base_sources[here])
    return found


def _missing_base_fix(written: str, looked: Path, child: Path) -> str:
    """`did you mean 'base.yaml'?` for a misspelt base, by the names beside where it was looked for
    (compared without `.yaml`: every name shares that), written as the user wrote the path."""
    relative = "paths in extends are relative to the file that writes them"
    if not looked.parent.is_dir():
        return relative
    names = {p.stem: p.name for p in looked.parent.glob("*.y*ml") if p.is_file() and p.resolve() != child}
    close = closest(looked.stem, names)
    if close is None:
        return relative
    folder = os.path.dirname(written)
    return f"did you mean '{os.path.join(folder, names[close]) if folder else names[close]}'? ({relative})"


def load(path: Path, _stack: tuple[Path, ...] = ()) -> Loaded:
    """Load a spec and everything it `extends`, child values winning over base values."""
    path = Path(os.path.abspath(path))
    data, sources, notes, empty, bare = _read_one(path)
    extends = data.pop("extends", None)
    line = sources.get(("extends",), Source(path, None)).line
    if extends is None:
        return Loaded(path, data, sources, [path], notes, bare)
    bases = [extends] if isinstance(extends, str) else extends
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise UserError(
            Problem(display_path(path), line, "extends", "must be a file name or a list of them", "")
        )
    merged: dict[str, Any] = {}
    merged_sources: dict[KeyPath, Source] = {}
    merged_notes: Notes = {}
    warnings: list[Problem] = []
    chain = [path]
    parents: list[Loaded] = []
    for base in bases:
        base_path = (path.parent / os.path.expanduser(base)).resolve()
        if base_path in (*_stack, path):
            cycle = " → ".join(display_path(p) for p in (*_stack, path, base_path))
            raise UserError(
                Problem(display_path(path), line, "extends", f"cycle: {cycle}", "remove one of the extends")
            )
        if base_path.is_dir():
            raise UserError(
                Problem(
                    display_path(path),
                    line,
                    "extends",
                    f"{base} is a folder (looked at {display_path(base_path)})",
                    "name the base spec file itself, e.g. base.yaml",
                )
            )
        if not base_path.is_file():
            raise UserError(
                Problem(
                    display_path(path),
                    line,
                    "extends",
                    f"base spec {base} not found (looked at {display_path(base_path)})",
                    _missing_base_fix(base, base_path, path),
                )
            )
        parent = load(base_path, (*_stack, path))
        parents.append(parent)
        merged = _merge(merged, parent.data)
        merged_notes = _merge_notes(merged_notes, parent.sources, parent.substitutions, merged)
        merged_sources = _merge_sources(merged_sources, parent.sources, merged)
        chain.extend(parent.chain)
        warnings.extend(parent.warnings)
    emptied = _emptied(empty, merged, merged_sources)
    nulled = {**{k: v for p in parents for k, v in p.nulled.items()}, **_nulled(data, merged, merged_sources)}
    merged = _merge(merged, data)
    merged_notes = _merge_notes(merged_notes, sources, notes, merged)
    merged_sources = _merge_sources(merged_sources, sources, merged)
    loaded = Loaded(path, merged, merged_sources, chain, merged_notes, nulled=nulled)
    # located after merging, so that each warning points at the child's empty line
    emptied_warnings = [loaded.problem(*found, severity="warning") for found in emptied]
    loaded.warnings = [*warnings, *bare, *emptied_warnings]
    return loaded
