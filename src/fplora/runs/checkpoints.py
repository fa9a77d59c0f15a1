"""Finding a run's checkpoints and states by global step, across resumed segments.

`step5000`, `latest`, `final` or a path: the same words for `fplora infer --lora` and
`fplora train --resume`. Files keep musubi-tuner's names; the step offset of each segment comes
from the run's manifest (a run without one is read as a single segment starting at 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fplora.musubi.names import lora_final_file, lora_step_file, parse_output, state_step_dir
from fplora.problems import Problem, UserError, display_path
from fplora.runs import evaluation
from fplora.runs.manifest import Manifest, Segment
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


def segments_of(output_dir: Path, output_name: str) -> list[Segment]:
    """The run's segments from its manifest; `UnreadableManifest` when it is broken."""
    manifest = Manifest.load(output_dir, output_name)
    if manifest and manifest.segments:
        return manifest.segments
    return [Segment(output_name=output_name)]


def segments_on_disk(output_dir: Path, output_name: str) -> list[Segment]:
    """The segments the run's file names show (`<name>`, `<name>-r1`, ...), each counted from
    step 0: what can still be listed when the manifest, which holds the offsets, is unreadable."""
    resumed = re.compile(rf"^{re.escape(output_name)}-r(\d+)(?=[-.])")
    found = {int(m.group(1)) for p in _names(output_dir) if (m := resumed.match(p))}
    return [Segment(output_name=output_name)] + [
        Segment(output_name=f"{output_name}-r{index}") for index in sorted(found)
    ]


def _names(output_dir: Path) -> list[str]:
    return sorted(p.name for p in output_dir.iterdir()) if output_dir.is_dir() else []


def find(output_dir: Path, output_name: str, segments: list[Segment] | None = None) -> list[Checkpoint]:
    """Every LoRA file and state folder of the run, in segment then step order (of `segments`,
    default the manifest's)."""
    found: list[Checkpoint] = []
    if not output_dir.is_dir():
        return found
    names = _names(output_dir)
    for index, segment in enumerate(segments or segments_of(output_dir, output_name)):
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


def _best_word(output_dir: Path, output_name: str, kind: str) -> str:
    """The word `best` stands for: the best-scored LoRA's file while it is there, else its step."""
    if kind != "lora":
        raise UserError(
            Problem(
                BEST,
                None,
                "",
                "is a LoRA chosen by `fplora eval`, not a state",
                "resume from stepN or latest",
            )
        )
    point = evaluation.best_lora(output_dir, output_name)
    if point.lora is not None and Path(point.lora).is_file():
        return point.lora
    if point.step is None:
        raise evaluation.no_evaluation(output_dir, output_name, f"the best LoRA {point.lora} is gone")
    return f"step{point.step}"


def parse_step(which: str) -> int | None:
    """`step5000` → 5000; anything else → None."""
    match = _STEP.match(which)
    return int(match.group(1)) if match else None


def expected(output_dir: Path, output_name: str, which: str, kind: str) -> Checkpoint | None:
    """The checkpoint `which` will name once trained (a first run's), for dry runs before training:
    `stepN`, and for LoRAs `final`/`latest` (the final file); None when there is no such name.

    Once the run has checkpoints of this kind a dry run must fail where the real command fails,
    so there is no future name then."""
    if any(found.kind == kind for found in find(output_dir, output_name)):
        return None
    step = parse_step(which)
    if step is not None:
        name = lora_step_file(output_name, step) if kind == "lora" else state_step_dir(output_name, step)
        return Checkpoint(output_dir / name, kind, step, 0, False)
    if kind == "lora" and which in ("latest", "final"):
        return Checkpoint(output_dir / lora_final_file(output_name), kind, None, 0, True)
    return None


def resolve(output_dir: Path, output_name: str, which: str, kind: str) -> Checkpoint:
    """`latest`, `final`, `stepN`, `best` (LoRAs) or a path → one checkpoint of `kind` ("lora" or
    "state"). `best` is the LoRA with the lowest evaluation loss in the run's eval.json."""
    if which == BEST:
        which = _best_word(output_dir, output_name, kind)
    as_path = Path(which).expanduser()
    step = parse_step(which)
    if which not in ("latest", "final") and step is None:
        if as_path.exists():
            # a file of this run: its name holds only its segment's own step, the manifest the offset
            resolved = as_path.resolve()
            for found in find(output_dir, output_name):
                if found.kind == kind and found.path.resolve() == resolved:
                    return found
            return Checkpoint(resolved, kind, None, -1, False)
        raise UserError(_unknown_word(which, kind))
    candidates = [c for c in find(output_dir, output_name) if c.kind == kind]
    what = "LoRA" if kind == "lora" else "state"
    if not candidates:
        raise UserError(
            Problem(
                display_path(output_dir),
                None,
                "",
                f"no {what} of {output_name} found",
                "train first (save_state: true for states)" if kind == "state" else "train first",
            )
        )
    if which == "final":
        finals = [c for c in candidates if c.final]
        if not finals:
            raise UserError(
                Problem(
                    display_path(output_dir), None, "", f"{output_name} has no final {what} yet", "use latest"
                )
            )
        return finals[-1]
    if which == "latest":
        known = [c for c in candidates if c.step is not None]
        # highest global step; a later segment wins a tie (it continues the newest line of training)
        return max(known, key=lambda c: (c.step, c.segment, not c.final)) if known else candidates[-1]
    matching = [c for c in candidates if c.step == step]
    if not matching:
        assert step is not None  # `final` and `latest` returned above
        steps = sorted({c.step for c in candidates if c.step is not None})
        raise UserError(
            Problem(
                display_path(output_dir),
                None,
                "",
                f"no {what} at global step {step}",
                f"available: {available(steps, step)}",
            )
        )
    return max(matching, key=lambda c: (c.segment, not c.final))


def _unknown_word(which: str, kind: str) -> Problem:
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
    return f"{len(steps)} steps from step{steps[0]} to step{steps[-1]}; nearest: {nearest}"


def same_step(output_dir: Path, output_name: str, chosen: Checkpoint) -> list[Checkpoint]:
    """Other segments' checkpoints at the chosen one's global step.

    Resuming from an older state (`--resume step20` after a segment ran to step 40) starts a second
    line of training over the same global steps; `stepN` then picks the newest segment, and the user
    should hear that an older one exists (reachable by its path)."""
    if chosen.step is None or chosen.final:
        return []
    return [
        found
        for found in find(output_dir, output_name)
        if found.kind == chosen.kind
        and found.step == chosen.step
        and not found.final
        and found.segment != chosen.segment
    ]
