"""`fplora dataset init DIR`: the dataset JSONL from a folder of pictures, pairs checked, layout said.

The most asked question about one-frame training is which image goes where. A record is a target
(the frame to learn) and its control images (the clean frames the model sees); musubi-tuner puts
`control_path_k` at latent index `one_frame.clean_indices[k]` and the target at `target_index`.
This reads one of three folder layouts, by file stem:

- `targets/<stem>.<ext>` and `control_0/<stem>.<ext>`, `control_1/<stem>.<ext>`, ...
- `targets/<stem>.<ext>` and `controls/<stem>_<k>.<ext>` (the bundled example's layout)
- one folder: `<stem>.<ext>` and `<stem>_<k>.<ext>` beside it (that folder may be `targets/`)

Captions come from `<stem>.txt` beside each target, or from a CSV (`--captions`, columns `image`
and `caption`). Paths in the JSONL are relative to it, so the folder can be moved or rsynced.
Anything that cannot be paired one way is refused, naming the files: a target without its k-th
control, a control without a target, two images with one stem, a missing or empty caption.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fplora.atomic import write_atomic
from fplora.problems import Problem, UserError, display_path, plural
from fplora.project import project_root
from fplora.spec.load import DATASET_SNIPPET
from fplora.spec.models import Spec

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
OTHER_PICTURES = frozenset({".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl"})
"""Pictures of types dataset init does not read: named when a folder holds nothing else."""
JSONL = "metadata.jsonl"
SNIPPET = DATASET_SNIPPET
_CONTROL_NAME = re.compile(r"^(?P<stem>.+)_(?P<k>\d+)$")
_CONTROL_FOLDER = re.compile(r"^control_(?P<k>\d+)$")

Say = Callable[[str], None]


@dataclass
class Found:
    layout: str
    targets: dict[str, Path] = field(default_factory=dict)
    controls: dict[str, dict[int, Path]] = field(default_factory=dict)  # stem → k → path
    problems: list[Problem] = field(default_factory=list)


def _images(folder: Path, found: Found) -> list[Path]:
    """The pictures in `folder`. A link whose picture is gone is a problem of its own: skipped
    silently, its record was refused as "no control 1 image" beside the file that names it."""
    out = []
    for path in folder.iterdir():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.is_file():
            out.append(path)
        elif path.is_symlink() and not path.exists():
            found.problems.append(
                Problem(
                    display_path(path),
                    None,
                    "",
                    f"a link to {os.readlink(path)}, which is not there",
                    "point the link at the picture, or remove it",
                )
            )
    return sorted(out)


def _by_stem(paths: list[Path], found: Found, into: dict[str, Path], stem_of: Callable[[Path], str]) -> None:
    for path in paths:
        stem = stem_of(path)
        if stem in into:
            found.problems.append(
                Problem(
                    display_path(path),
                    None,
                    "",
                    f"two images for one record: {into[stem].name} and {path.name}",
                    "keep one of them",
                )
            )
            continue
        into[stem] = path


def scan(folder: Path) -> Found:
    """Targets and controls by stem, in whichever layout the folder has."""
    targets = folder / "targets"
    subfolders = {
        int(m["k"]): p for p in folder.iterdir() if p.is_dir() and (m := _CONTROL_FOLDER.match(p.name))
    }
    if targets.is_dir() and subfolders:
        found = Found("targets/ + control_<k>/")
        _by_stem(_images(targets, found), found, found.targets, lambda p: p.stem)
        for k, sub in sorted(subfolders.items()):
            per: dict[str, Path] = {}
            _by_stem(_images(sub, found), found, per, lambda p: p.stem)
            for stem, path in per.items():
                found.controls.setdefault(stem, {})[k] = path
        return found
    if targets.is_dir() and (folder / "controls").is_dir():
        found = Found("targets/ + controls/<stem>_<k>")
        _by_stem(_images(targets, found), found, found.targets, lambda p: p.stem)
        _controls_by_name(_images(folder / "controls", found), found, set())
        return found
    if targets.is_dir():
        # targets/ with each target's controls beside it (targets/0001.png, targets/0001_0.png):
        # read as the folder of its own, where it found "no target images"
        found = Found("targets/: <stem> + <stem>_<k>")
        _one_folder(targets, found)
        return found
    found = Found("one folder: <stem> + <stem>_<k>")
    _one_folder(folder, found)
    return found


def _one_folder(folder: Path, found: Found) -> None:
    images = _images(folder, found)
    stems = {p.stem for p in images}
    controls = [p for p in images if (m := _CONTROL_NAME.match(p.stem)) and m["stem"] in stems]
    _by_stem([p for p in images if p not in controls], found, found.targets, lambda p: p.stem)
    _controls_by_name(controls, found, set())


def _controls_by_name(paths: list[Path], found: Found, _: set[str]) -> None:
    for path in paths:
        match = _CONTROL_NAME.match(path.stem)
        if match is None:
            found.problems.append(
                Problem(
                    display_path(path), None, "", "not named <target stem>_<k>", "rename it, e.g. 0001_0.png"
                )
            )
            continue
        per = found.controls.setdefault(match["stem"], {})
        k = int(match["k"])
        if k in per:
            found.problems.append(
                Problem(
                    display_path(path),
                    None,
                    "",
                    f"two control {k} images: {per[k].name} and {path.name}",
                    "keep one",
                )
            )
            continue
        per[k] = path


def _text(path: Path) -> str:
    """A caption file's text: UTF-8, with the byte-order mark Windows editors and Excel's "CSV UTF-8"
    put first left out (it would go into the caption, or into the first column's name). Other
    encodings (cp1252, Shift-JIS) are refused with the line, not decoded by guess."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(
            Problem(
                display_path(path),
                line,
                "",
                f"not UTF-8 text (byte 0x{data[exc.start]:02x})",
                "save it as UTF-8 (e.g. iconv -f cp932 -t utf-8, for a file from a Japanese Windows editor)",
            )
        ) from None


def _captions_csv(path: Path) -> dict[str, str]:
    try:
        rows = list(csv.DictReader(io.StringIO(_text(path), newline="")))
    except OSError as exc:
        raise UserError(
            Problem(display_path(path), None, "", f"cannot be read: {exc.strerror or exc}", "fix the path")
        ) from None
    if rows and not {"image", "caption"} <= set(rows[0]):
        raise UserError(
            Problem(
                display_path(path),
                1,
                "",
                f"columns {', '.join(rows[0])}; need image and caption",
                "name the columns image,caption",
            )
        )
    return {Path(row["image"]).stem: row["caption"] for row in rows}


@dataclass(frozen=True)
class Layout:
    """Where one-frame training puts each image: `clean_indices[k]` for control k, `target_index`."""

    clean_indices: tuple[int, ...]
    target_index: int
    source: str  # where the settings came from

    def lines(self, found: Found) -> list[str]:
        control = "control_{k}/" if "control_<k>" in found.layout else "<stem>_{k}"
        out = [f"one-frame layout ({self.source}):"]
        slots = [
            (self.target_index, "the target (targets/<stem> or <stem>): the frame the LoRA learns to make")
        ]
        slots += [
            (
                index,
                f"control {k} ({control.format(k=k)}, control_path_{k}): a clean frame the model is shown",
            )
            for k, index in enumerate(self.clean_indices)
        ]
        out += [f"  latent index {index:>2}: {what}" for index, what in sorted(slots)]
        return out


def records(
    folder: Path, found: Found, layout: Layout, captions: dict[str, str] | None
) -> list[dict[str, str]]:
    """The JSONL records, paths relative to `folder`; every problem of the folder in `found.problems`."""
    wanted = len(layout.clean_indices)
    out = []
    for stem, control_set in sorted(found.controls.items()):
        if stem not in found.targets:
            path = next(iter(control_set.values()))
            fix = "add the target or remove the control"
            named = _CONTROL_NAME.match(stem)
            if named and named["stem"] in found.targets and _CONTROL_FOLDER.match(path.parent.name):
                # control_0/0001_0.png: the <stem>_<k> naming of the other layouts, in a control_<k>/ folder
                fix = (
                    f"in {path.parent.name}/ a control has its target's name: rename it"
                    f" {named['stem']}{path.suffix}"
                )
            found.problems.append(
                Problem(
                    display_path(path),
                    None,
                    "",
                    f"control image without a target {stem}.*",
                    fix,
                )
            )
    for stem, target in sorted(found.targets.items()):
        controls = found.controls.get(stem, {})
        missing = [k for k in range(wanted) if k not in controls]
        extra = sorted(k for k in controls if k >= wanted)
        if missing:
            found.problems.append(
                Problem(
                    display_path(target),
                    None,
                    "",
                    f"no control {', '.join(map(str, missing))} image (one-frame needs {wanted} controls:"
                    f" clean_indices {list(layout.clean_indices)})",
                    "add it with the same stem, or remove the target",
                )
            )
            continue
        if extra:
            found.problems.append(
                Problem(
                    display_path(controls[extra[0]]),
                    None,
                    "",
                    f"control {extra[0]} but clean_indices has {wanted} entries",
                    "remove it, or add an index to one_frame.clean_indices",
                )
            )
            continue
        caption = _caption(target, captions, found)
        if caption is None:
            continue
        item = {"image_path": target.relative_to(folder).as_posix()}
        for k in range(wanted):
            item[f"control_path_{k}"] = controls[k].relative_to(folder).as_posix()
        item["caption"] = caption
        out.append(item)
    return out


def _caption_file(target: Path) -> Path:
    """`<stem>.txt` beside the target, or the one of its stem written `.TXT` (`.Txt`, ...), as a
    Windows or macOS folder has them: on Linux `a01.TXT` was "not found"."""
    txt = target.with_suffix(".txt")
    if txt.is_file():
        return txt
    other = [p for p in target.parent.glob(f"{glob.escape(target.stem)}.*") if p.suffix.lower() == ".txt"]
    return other[0] if len(other) == 1 else txt


def _caption(target: Path, captions: dict[str, str] | None, found: Found) -> str | None:
    if captions is not None:
        text = captions.get(target.stem)
        where = "the captions CSV"
        missing = f"the captions CSV has no row for {target.name}"
    else:
        txt = _caption_file(target)
        try:
            text = _text(txt).strip() if txt.is_file() else None
        except UserError as error:
            found.problems.extend(error.problems)
            return None
        where = display_path(txt)
        missing = f"{where} not found"
    if text is None:
        found.problems.append(
            Problem(
                display_path(target),
                None,
                "",
                f"no caption: {missing}",
                "write it, or give --captions FILE.csv",
            )
        )
        return None
    if not text.strip():
        found.problems.append(
            Problem(display_path(target), None, "", f"empty caption in {where}", "write the caption")
        )
        return None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1:
        # written into the record as "line one\nline two": `check` then refused it in a prompt file
        # (one prompt per line), far from the caption file that held it
        found.problems.append(
            Problem(
                display_path(target),
                None,
                "",
                f"the caption in {where} has {len(lines)} lines; a caption is one line (prompt files hold one"
                " prompt per line)",
                "join them into one line",
            )
        )
        return None
    return text.strip()


def _as_named_by_a_spec(jsonl: Path) -> str:
    """The JSONL's path as a spec under the project's `configs/` names it (relative, so the project
    can move), or absolute outside a project."""
    absolute = jsonl.resolve()
    root = project_root(absolute.parent)
    if root is None:
        return str(absolute)
    return os.path.relpath(absolute, root / "configs")


def snippet(jsonl: str, layout: Layout) -> str:
    """The `datasets:` entry to paste. It carries `num_repeats: 10`, what `fplora init`'s v1.yaml
    sets: pasted over that entry without it, each record would be seen once an epoch instead of ten
    times, and nothing would say so."""
    return (
        "# written by `fplora dataset init`: in your spec (configs/<version>.yaml), replace the datasets:\n"
        "# entry with this one, keeping its num_repeats (a spec has one datasets: key, so pasting a second\n"
        "# one below it is a YAML error); one_frame: is the layout these records were made for\n"
        "datasets:\n"
        f"  - jsonl: {jsonl}\n"
        "    num_repeats: 10   # as `fplora init`'s configs/v1.yaml; without it, each record once per epoch\n"
        "one_frame:\n"
        f"  clean_indices: {list(layout.clean_indices)}\n"
        f"  target_index: {layout.target_index}\n"
    )


def init(
    folder: Path, *, layout: Layout, captions_csv: Path | None, dry_run: bool, force: bool, say: Say, out: Say
) -> int:
    if not folder.is_dir():
        raise UserError(
            Problem(display_path(folder), None, "", "not a folder", "give the folder of pictures")
        )
    found = scan(folder)
    captions = _captions_csv(captions_csv) if captions_csv is not None else None
    items = records(folder, found, layout, captions)
    if found.problems:
        raise UserError(found.problems)
    if not items:
        raise UserError(_nothing_found(folder))
    say(f"layout: {found.layout}; {plural(len(items), 'record')}")
    for line in layout.lines(found):
        say(line)
    named = _named(folder)
    waiting = {path: spec for path, spec in named.items() if not path.exists()}
    awaited = _awaited(waiting) or _kept(named)
    jsonl = awaited[1] if awaited else folder / JSONL
    if dry_run:
        for item in items:
            out(json.dumps(item, ensure_ascii=False))
        return 0
    text = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)
    if awaited and jsonl.exists():
        if _same_file(jsonl, text):
            say(
                f"{display_path(jsonl)} ({display_path(awaited[0])} names it) already holds these"
                f" {plural(len(items), 'record')}: nothing written"
            )
            return 0
        if not force:
            raise UserError(_differs(jsonl, awaited[0], len(items)))
    elif jsonl.exists() and not force:
        raise UserError(
            Problem(
                display_path(jsonl), None, "", "exists; not overwriting it", "pass --force, or move it away"
            )
        )
    write_atomic(jsonl, text)
    write_atomic(folder / SNIPPET, snippet(_as_named_by_a_spec(jsonl), layout))
    say(f"wrote {display_path(jsonl)} and {display_path(folder / SNIPPET)} (the spec snippet)")
    if awaited:
        spec = display_path(awaited[0])
        say(f"next: {spec} names this file already: fplora check {spec}")
        return 0
    if waiting:
        # a folder several versions name by files of their own (metadata-v8.jsonl, metadata-v9.jsonl):
        # "set jsonl:" left each spec's own file missing without a word
        names = ", ".join(f"{display_path(spec)} names {path.name}" for path, spec in waiting.items())
        say(
            f"next: {names} in this folder: copy {jsonl.name} to each of those names, or set their jsonl:"
            f" to {_as_named_by_a_spec(jsonl)}"
        )
        return 0
    say(
        f"next: in your spec's datasets: entry, set `jsonl: {_as_named_by_a_spec(jsonl)}`"
        " (replace the entry; a second datasets: key is a YAML error)"
    )
    return 0


def _nothing_found(folder: Path) -> Problem:
    """No record in `folder`: where its subfolders hold pictures in a layout of their own (one
    folder per character: `alice/targets/...`, `bob/targets/...`), say to run init on each rather
    than "put the targets in targets/", which they are."""
    nested = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        inner = Found("")
        if (sub / "targets").is_dir() or _images(sub, inner):
            nested.append(sub)
    if nested:
        shown = ", ".join(f"{display_path(p)}/" for p in nested[:4]) + (", ..." if len(nested) > 4 else "")
        return Problem(
            display_path(folder),
            None,
            "",
            f"no target images here, but {shown} hold pictures of their own",
            f"run `fplora dataset init` on each (e.g. fplora dataset init {display_path(nested[0])}) and"
            " give each JSONL its own datasets: entry",
        )
    others = sorted(
        {
            p.suffix.lower()
            for place in (folder, folder / "targets")
            if place.is_dir()
            for p in place.iterdir()
            if p.suffix.lower() in OTHER_PICTURES
        }
    )
    if others:  # a folder of .heic from a phone: "put the targets in targets/" did not say why
        return Problem(
            display_path(folder),
            None,
            "",
            f"no target images found: it holds {', '.join(others)} pictures, which dataset init does not"
            f" read (it reads {', '.join(sorted(IMAGE_SUFFIXES))})",
            "convert them, e.g. to PNG",
        )
    return Problem(
        display_path(folder),
        None,
        "",
        "no target images found",
        "put the targets in targets/ (see `fplora dataset init --help`)",
    )


def _awaited(waiting: dict[Path, Path]) -> tuple[Path, Path] | None:
    """(spec, JSONL) where a spec of the project names a JSONL in `folder` that is not there yet:
    `fplora init`'s configs/v1.yaml names datasets/dataset-v1/metadata-v1.jsonl, and a new user
    puts the pictures into that folder. Writing the file the spec names makes its check pass as it
    is; writing metadata.jsonl beside it left a 'not found' to chase. None when no spec (or more
    than one file name) is waiting (`_named`), or a spec does not load."""
    if len(waiting) != 1:
        return None
    ((jsonl, spec_path),) = waiting.items()
    return spec_path, jsonl


def _kept(named: dict[Path, Path]) -> tuple[Path, Path] | None:
    """(spec, JSONL) where the project's specs name one JSONL in the folder and it exists: `dataset
    init` run again (twice, or after pictures were added) writes that file, which they train on,
    not a metadata.jsonl beside it that no spec reads."""
    existing = [(spec, path) for path, spec in named.items() if path.exists()]
    return existing[0] if len(named) == 1 and existing else None


def _same_file(jsonl: Path, text: str) -> bool:
    try:
        return jsonl.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def _differs(jsonl: Path, spec: Path, records: int) -> Problem:
    """A JSONL the specs train on that the pictures would now write otherwise: say so, and how to
    replace it or keep it."""
    try:
        there = sum(1 for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip())
        counts = f" ({there} {'record' if there == 1 else 'records'} there, {records} here)"
    except (OSError, UnicodeDecodeError):
        counts = ""
    readme = jsonl.parent / "README.md"
    how = f"{display_path(readme)} says how" if readme.is_file() else "e.g. metadata-v2.jsonl for a new spec"
    return Problem(
        display_path(jsonl),
        None,
        "",
        f"{display_path(spec)} trains on it, and it differs from the pictures{counts}; not overwriting it",
        f"pass --force to write it from the pictures, or write a new dataset version ({how})",
    )


def _named(folder: Path) -> dict[Path, Path]:
    """JSONL → spec, for every JSONL in `folder` that a spec of the project names, there yet or not
    (`experiments`: bases left out)."""
    from fplora.project import experiments
    from fplora.spec import load_spec

    root = project_root(folder)
    named: dict[Path, Path] = {}
    for path in experiments(root) if root is not None else []:
        try:
            spec = load_spec(path)
        except UserError:
            continue
        for entry in spec.datasets:
            if entry.jsonl.parent.resolve() == folder.resolve():
                named.setdefault(entry.jsonl, path)
    return named


HOUSE = Layout((0, 10), 5, "the house settings: one_frame clean_indices [0, 10], target_index 5")


def house_layout() -> Layout:
    return HOUSE


def layout_of(spec: Spec) -> Layout:
    one_frame = spec.one_frame
    source = (
        f"{display_path(spec.path)}: clean_indices {list(one_frame.clean_indices)},"
        f" target_index {one_frame.target_index}"
    )
    return Layout(tuple(one_frame.clean_indices), one_frame.target_index, source)
