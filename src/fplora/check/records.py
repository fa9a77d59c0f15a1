"""Dataset records: every target and control image readable, the control count right, stems unique.

These are the mistakes musubi-tuner finds only after loading models onto the GPU (a missing control
image stops latent caching part way), or never (two images with the same stem share one cache file,
so one record silently trains on the other's latents). Every problem points at the JSONL line.

Size checks are warnings, and capped per dataset: a dataset of small images would otherwise print one
line per record for the same cause.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from fplora.check.images import ImageInfo
from fplora.check.jsonl import (
    blank_line_problems,
    bom_problems,
    control_key_problems,
    file_problem,
    json_problems,
    not_jsonl_problem,
    read_lines,
    unreadable,
    windows_path_problems,
)
from fplora.datasets.records import Records
from fplora.problems import Problem, display_path, plural
from fplora.spec.models import Spec, width_height

MAX_SAME_WARNING = 5
"""Size warnings of one kind listed per dataset before the rest are summed up in one line."""

_RELATIVE_FIX = "check the path; relative paths resolve against the JSONL file's folder"


@dataclass(frozen=True)
class _Sizes:
    """The size rules of one dataset, from its settings with `data:` as fallback."""

    width: int
    height: int
    enable_bucket: bool
    bucket_no_upscale: bool

    @property
    def upscales(self) -> bool:
        """musubi-tuner resizes to the resolution unless bucketing without upscaling."""
        return not (self.enable_bucket and self.bucket_no_upscale)


def _sizes(spec: Spec, index: int) -> _Sizes:
    width, height = width_height(spec.dataset_value(index, "resolution"))
    return _Sizes(
        width,
        height,
        bool(spec.dataset_value(index, "enable_bucket")),
        bool(spec.dataset_value(index, "bucket_no_upscale")),
    )


def record_paths(records: Records) -> Iterator[str]:
    """Every image path the records name, targets and controls, as probe keys."""
    for record in records.items:
        if record.image_path is not None:
            yield record.image_path
        yield from record.control_paths


class _Shown:
    """`display_path` memoized per folder: a dataset's images share a few folders, and resolving each
    path on its own (symlinks and all) costs more than probing the image. Paths come as the text
    `Record.image_path` holds (what `str(Path)` gives), so splitting them is string work."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        parent, name = os.path.split(path)
        folder = self._folders.get(parent)
        if folder is None:
            folder = self._folders[parent] = display_path(Path(path).parent)
        return name if folder == "." else os.path.join(folder, name)


def _stem(path: str) -> str:
    """`Path(path).stem` of a normalised path's text, without building the `Path`."""
    name = path[path.rfind("/") + 1 :]
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def _image_problem(shown: str, line: int, key: str, path: str, info: ImageInfo) -> Problem:
    fix = _RELATIVE_FIX if info.error == "not found" else info.fix
    return Problem(shown, line, key, f"{path} {info.error}", fix)


def _size_warnings(shown: str, size: tuple[int, int], rules: _Sizes) -> Iterator[tuple[str, str, str]]:
    """(kind, message, fix) for a target image that trains badly at the dataset's resolution."""
    width, height = size
    resolution = f"{rules.width}x{rules.height}"
    if width * height * 2 < rules.width * rules.height:
        what = "it is upscaled" if rules.upscales else "it trains at its own, smaller size"
        yield (
            "small",
            f"{shown} is {width}x{height}, under half the pixels of resolution {resolution}",
            f"{what}; use larger images or a lower resolution",
        )
    if not rules.enable_bucket and width and height:
        ratio = (width / height) / (rules.width / rules.height)
        if ratio > 2 or ratio < 0.5:
            yield (
                "aspect",
                f"{shown} is {width}x{height}, an aspect ratio over 2x off resolution {resolution}",
                "without enable_bucket every image is resized and cropped to the resolution;"
                " set enable_bucket: true or crop the image",
            )


_SUMMARY = {
    "small": "more target images are under half the pixels of resolution {resolution}",
    "aspect": "more target images have an aspect ratio over 2x off resolution {resolution}",
}


def _shape(width: int, height: int) -> str:
    return "portrait" if height > width else "landscape" if width > height else "square"


def _orientation(
    spec: Spec, index: int, records: Records, images: Mapping[str, ImageInfo], rules: _Sizes
) -> list[Problem]:
    """A warning when the resolution is landscape and every target image portrait, or the other way
    round: `[width, height]` written as `[height, width]`. Samples and inference default to the
    resolution, so they come out in the other orientation; without enable_bucket every image is
    also cropped to it."""
    wanted = _shape(rules.width, rules.height)
    if wanted == "square":
        return []
    sizes = [
        info.size
        for record in records.items
        if record.image_path is not None and (info := images[record.image_path]).ok and info.size is not None
    ]
    other = "portrait" if wanted == "landscape" else "landscape"
    if not sizes or any(_shape(*size) != other for size in sizes):
        return []
    width, height = sizes[0]
    own = index < len(spec.datasets) and spec.datasets[index].resolution is not None
    key: tuple[str | int, ...] = ("datasets", index, "resolution") if own else ("data", "resolution")
    every = f"all {len(sizes)} target images are" if len(sizes) > 1 else "the target image is"
    cropped = "" if rules.enable_bucket else ", and every image is cropped to it (no enable_bucket)"
    return [
        spec.problem(
            key,
            f"[{rules.width}, {rules.height}] is {wanted} ([width, height]), but {every} {other}"
            f" (e.g. {width}x{height}): samples are made at {rules.width}x{rules.height}{cropped}",
            f"did you mean [{rules.height}, {rules.width}]?",
            "warning",
        )
    ]


def check_records(spec: Spec, index: int, records: Records, images: Mapping[str, ImageInfo]) -> list[Problem]:
    """Problems of `datasets[index]`, in line order: structural ones from reading, then per record.

    A dataset file that cannot be read at all is one problem, at the spec line that names it.
    """
    if unreadable(records):
        return [file_problem(spec, index, records)]
    shown = display_path(records.jsonl)
    clean_indices = spec.one_frame.clean_indices
    expected = len(clean_indices)
    rules = _sizes(spec, index)
    lines = read_lines(records.jsonl)
    if (wrong_file := not_jsonl_problem(spec, index, records, lines)) is not None:
        return [wrong_file]
    problems, continued = json_problems(records, lines)
    problems += bom_problems(records)
    problems += windows_path_problems(records)
    problems += blank_line_problems(records, lines, continued)
    problems += control_key_problems(records, lines)
    shown_path = _Shown()
    # lines whose control paths already have a problem: a count mismatch there is the same mistake
    # (an unknown key offered `control_path_N` is a misnamed control image, so it counts too)
    bad_controls = {p.line for p in problems if p.key.startswith("control_path") or "control_path" in p.fix}
    stems: dict[str, int] = {}
    warned: dict[str, int] = {}
    extra: dict[str, int] = {}
    aspect: list[Problem] = []  # per-image aspect warnings, dropped when the resolution is turned
    quiet: set[tuple[int, int]] = set()  # sizes without a size warning: most, asked once each
    for record in records.items:
        line = record.line
        image = record.image_path
        if image is not None:
            info = images[image]
            if not info.ok:
                problems.append(_image_problem(shown, line, "image_path", shown_path(image), info))
            elif info.size is not None and info.size not in quiet:
                sized = list(_size_warnings(shown_path(image), info.size, rules))
                if not sized:
                    quiet.add(info.size)
                for kind, message, fix in sized:
                    warned[kind] = warned.get(kind, 0) + 1
                    if warned[kind] <= MAX_SAME_WARNING:
                        warning = Problem(shown, line, "image_path", message, fix, "warning")
                        problems.append(warning)
                        if kind == "aspect":
                            aspect.append(warning)
                    else:
                        extra[kind] = extra.get(kind, 0) + 1
            stem = _stem(image)
            first = stems.setdefault(stem, line)
            if first != line:
                problems.append(
                    Problem(
                        shown,
                        line,
                        "image_path",
                        f"same file stem '{stem}' as line {first}: musubi-tuner names caches by stem,"
                        " so one record would train on the other's latents",
                        "rename one of the two images",
                    )
                )
        for number, control in enumerate(record.control_paths):
            info = images[control]
            if not info.ok:
                problems.append(
                    _image_problem(shown, line, f"control_path_{number}", shown_path(control), info)
                )
        if len(record.control_paths) != expected and line not in bad_controls:
            problems.append(
                Problem(
                    shown,
                    line,
                    "control_path",
                    f"{plural(expected, 'control image')} expected"
                    f" (one_frame.clean_indices = {clean_indices}), found {len(record.control_paths)}",
                    f"give every record control_path_0..{expected - 1}, or change one_frame.clean_indices"
                    if expected > 1
                    else "give every record control_path_0, or change one_frame.clean_indices",
                )
            )
    problems.sort(key=lambda problem: problem.line or 0)
    turned = _orientation(spec, index, records, images, rules)
    if turned:  # every image is off the resolution's aspect for the one reason it names
        problems = [p for p in problems if not any(p is a for a in aspect)] + turned
        extra.pop("aspect", None)
    resolution = f"{rules.width}x{rules.height}"
    for kind, count in extra.items():
        problems.append(
            Problem(
                shown,
                None,
                "image_path",
                f"{count} {_SUMMARY[kind].format(resolution=resolution)}",
                "only the first few are listed",
                "warning",
            )
        )
    return problems
