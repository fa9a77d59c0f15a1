"""`fplora runs`: what a spec's run holds, segment by segment, in global steps.

The answer to "which steps can I infer from or resume?" after a few resumes, without reading
musubi-tuner's per-segment file names.
"""

from __future__ import annotations

from dataclasses import dataclass

from fplora.problems import Problem
from fplora.runs.catalogue import Catalogue
from fplora.runs.checkpoints import Checkpoint
from fplora.runs.manifest import Segment


@dataclass(frozen=True)
class SegmentRow:
    segment: Segment
    loras: list[Checkpoint]
    states: list[Checkpoint]
    live: bool = False  # the run's lock is held by a live process

    @property
    def status(self) -> str:
        seg = self.segment
        if seg.interrupted:
            return "interrupted"
        if seg.exit_code is None:
            if seg.started and not seg.ended:
                # a killed fplora (kill -9, a lost pod) never records the end of its segment
                return "running" if self.live else "stopped (no exit recorded)"
            return "unknown"
        return "finished" if seg.exit_code == 0 else f"failed (exit {seg.exit_code})"

    @property
    def end_text(self) -> str:
        """The segment's last global step; from its checkpoints when its end was never recorded."""
        if self.segment.end_step is not None:
            return str(self.segment.end_step)
        saved = [c.step for c in (*self.loras, *self.states) if c.step is not None]
        return f"{max(saved)}+" if saved else "?"


def summarise(run: Catalogue) -> tuple[list[SegmentRow], list[Problem]]:
    """One row per segment, and what kept the summary from being whole: with an unreadable
    manifest the segments come from the file names, steps counted per segment."""
    segments, found, problems = run.listing()
    live = run.training_pid is not None
    rows = []
    for index, segment in enumerate(segments):
        mine = sorted((c for c in found if c.segment == index), key=lambda c: (c.final, c.step or 0))
        loras = [c for c in mine if c.kind == "lora"]
        states = [c for c in mine if c.kind == "state"]
        rows.append(SegmentRow(segment, loras, states, live=live and index == len(segments) - 1))
    return rows, problems


def steps_text(checkpoints: list[Checkpoint]) -> str:
    """`100, 200, ..., 1000, final` (at most the first two and last three listed)."""
    labels = [str(c.step) if c.step is not None and not c.final else "final" for c in checkpoints]
    if len(labels) > 6:
        labels = [*labels[:2], "…", *labels[-3:]]
    return ", ".join(labels) or "—"
