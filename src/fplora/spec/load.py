"""Loading a spec: the file (`spec.read`) and every file its `extends:` chain names, merged, child
values winning, with the warnings merging can give (a key left empty or set to null over a base's
value); and which specs of a folder are experiments rather than bases.

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
from fplora.spec.read import read_one
from fplora.spec.source import KeyPath, Loaded, Source
from fplora.spec.variables import Notes
from fplora.suggest import closest

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
    specs = _specs_in(folder)
    loads: list[Loaded] = []
    for spec in specs:
        try:
            loads.append(load(spec))
        except UserError:
            continue
    bases = extended(loads)
    return [s for s in specs if s.resolve() not in bases]


def _specs_in(folder: Path) -> list[Path]:
    """The spec files in `folder`, the dataset snippet left out, in natural order (v2 before v10)."""
    return sorted(
        (p for p in folder.glob("*.y*ml") if p.is_file() and p.name != DATASET_SNIPPET), key=natural
    )


def specs_under(folder: Path) -> list[Path]:
    """The spec files in `folder` and its subfolders (`configs/archive/v1.yaml`), the dataset snippet
    left out, as are dot-folders and the folders fplora renders into (`configs/v1/` beside
    `configs/v1.yaml`): each folder's in natural order, the folder's own before its subfolders'."""
    found: list[Path] = []
    for here, folders, _ in os.walk(folder):
        base = Path(here)
        folders[:] = sorted(
            (
                name
                for name in folders
                if not name.startswith(".")
                and not any((base / f"{name}{suffix}").is_file() for suffix in (".yaml", ".yml"))
            ),
            key=lambda name: natural(Path(name)),
        )
        found += _specs_in(base)
    return found


def extending(base: Path) -> list[Path]:
    """The specs in `base`'s folder whose `extends:` chain holds it, in natural order."""
    found = []
    for spec in _specs_in(base.parent):
        try:
            chain = load(spec).chain[1:]
        except UserError:
            continue
        if base.resolve() in {p.resolve() for p in chain}:
            found.append(spec)
    return found


def extended(loads: Iterable[Loaded]) -> set[Path]:
    """The files these loaded specs extend, resolved: bases, which are not experiments."""
    return {base.resolve() for loaded in loads for base in loaded.chain[1:]}


def _folder_problem(path: Path) -> Problem:
    """A folder given where the spec goes, with the experiments it (or its `configs/`) holds; for
    a version's rendered folder (`configs/v2/`, tab-completed from `configs/v2`), its spec."""
    rendered = not (path / "configs").is_dir() and not _specs_in(path)  # a project, or specs, are not
    for suffix in (".yaml", ".yml") if rendered else ():
        spec = path.absolute().parent / f"{path.absolute().name}{suffix}"
        if spec.is_file():
            return Problem(
                display_path(path),
                None,
                "",
                "is the folder fplora renders a spec into, not a spec file",
                f"give the spec: {display_path(spec)}",
            )
    folder = path / "configs" if (path / "configs").is_dir() else path
    specs = [display_path(p) for p in experiments_in(folder)]
    more = f" (and {len(specs) - 5} more)" if len(specs) > 5 else ""
    fix = f"name a spec file in it: {', '.join(specs[:5])}{more}" if specs else "name a spec file (a .yaml)"
    return Problem(display_path(path), None, "", "is a folder, not a spec file", fix)


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
    if path.is_dir():
        raise UserError(_folder_problem(path))
    read = read_one(path)
    data, sources = read.data, read.sources
    extends = data.pop("extends", None)
    line = sources.get(("extends",), Source(path, None)).line
    if extends is None:
        return Loaded(path, data, sources, [path], read.notes, read.bare)
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
    emptied = _emptied(read.empty, merged, merged_sources)
    nulled = {**{k: v for p in parents for k, v in p.nulled.items()}, **_nulled(data, merged, merged_sources)}
    merged = _merge(merged, data)
    merged_notes = _merge_notes(merged_notes, sources, read.notes, merged)
    merged_sources = _merge_sources(merged_sources, sources, merged)
    loaded = Loaded(path, merged, merged_sources, chain, merged_notes, nulled=nulled)
    # located after merging, so that each warning points at the child's empty line
    emptied_warnings = [loaded.problem(*found, severity="warning") for found in emptied]
    loaded.warnings = [*warnings, *read.bare, *emptied_warnings]
    return loaded
