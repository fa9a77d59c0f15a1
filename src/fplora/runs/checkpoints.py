"""A run's checkpoints and states by global step, across resumed segments, as their names show.

Files keep musubi-tuner's names; the step offset of each segment comes from the run's manifest (a
run without one is read as a single segment starting at 0). Which checkpoint a word names
(`step5000`, `latest`, `final`, `best`, a path; the same words for `fplora infer --lora` and
`fplora train --resume`) is the catalogue's to answer (`runs/catalogue.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fplora.musubi.names import parse_output
from fplora.problems import Problem, plural
from fplora.runs.manifest import Manifest, Segment, segment_name
from fplora.suggest import closest


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    kind: str  # "lora" or "state"
    step: int | None  # global step; None when unknown (a final file of an unfinished record)
    segment: int
    final: bool

    @property
    def label(self) -> str:
        return f"step{self.step}" if self.step is not None else self.path.name


def segments_on_disk(output_dir: Path, output_name: str) -> list[Segment]:
    """The segments the run's file names show (`<name>`, `<name>-r1`, ...), each counted from
    step 0: what can still be listed when the manifest, which holds the offsets, is unreadable.
    Only the names `segment_name` writes are read back (`-r1`, `-r2`, ...): index 0 is the first
    segment's own name, so a stray `<name>-r0-...` file must not list that segment a second time."""
    resumed = re.compile(rf"^{re.escape(output_name)}-r([1-9]\d*)(?=[-.])")
    found = {int(m.group(1)) for p in _names(output_dir) if (m := resumed.match(p))}
    return [Segment(output_name=output_name)] + [
        Segment(output_name=segment_name(output_name, index)) for index in sorted(found)
    ]


def _names(output_dir: Path) -> list[str]:
    return sorted(p.name for p in output_dir.iterdir()) if output_dir.is_dir() else []


def scan(output_dir: Path, segments: list[Segment]) -> list[Checkpoint]:
    """Every LoRA file and state folder of the run's `segments`, in segment then step order.
    (Commands ask `runs.catalogue.Catalogue`, which scans once.)"""
    found: list[Checkpoint] = []
    if not output_dir.is_dir():
        return found
    names = _names(output_dir)
    for index, segment in enumerate(segments):
        for name in names:
            parsed = parse_output(name, segment.output_name, output_dir / name)
            if parsed is None or parsed.epoch is not None:
                continue
            final = parsed.step is None
            step = segment.end_step if final else segment.step_offset + (parsed.step or 0)
            found.append(Checkpoint(parsed.path, parsed.kind, step, index, final))
    return found


def run_files(output_dir: Path, output_name: str) -> list[Path]:
    """Anything in `output_dir` that belongs to this run (any segment), manifest included."""
    if not output_dir.is_dir():
        return []
    segment = re.compile(rf"^{re.escape(output_name)}(-r\d+)?")
    files = []
    for path in output_dir.iterdir():
        match = segment.match(path.name)
        name = match.group(0) if match else None
        if name and (parse_output(path.name, name, path) or path.name == f"{name}.log"):
            files.append(path)
    manifest = Manifest.path_for(output_dir, output_name)
    return [*files, manifest] if manifest.exists() else files


_STEP = re.compile(r"^step(\d+)$")
BEST = "best"


def parse_step(which: str) -> int | None:
    """`step5000` → 5000; anything else → None."""
    match = _STEP.match(which)
    return int(match.group(1)) if match else None


def unknown_word(which: str, kind: str) -> Problem:
    """A name that is neither a file nor a word: the words this kind takes, the likely one first
    (`lastest`). States take no `final` or `best`: a resume from them is refused anyway."""
    words = ["latest", "final", BEST] if kind == "lora" else ["latest"]
    named = f"{', '.join(words)} or stepN"
    if which.isdigit():
        fix = f"write step{which}"
    elif (close := closest(which.lower(), words)) is not None:
        fix = f"did you mean '{close}'?"
    else:
        fix = "give a step like step5000"
    return Problem(which, None, "", f"no such file, and not {named}", fix)


def available(steps: list[int], wanted: int) -> str:
    """The steps to offer instead of `wanted`: all of a few, else the range and the two nearest."""
    if len(steps) <= 8:
        return ", ".join(f"step{s}" for s in steps) or "none"
    below = [s for s in steps if s < wanted][-1:]
    above = [s for s in steps if s > wanted][:1]
    nearest = ", ".join(f"step{s}" for s in below + above)
    return f"{plural(len(steps), 'step')} from step{steps[0]} to step{steps[-1]}; nearest: {nearest}"
