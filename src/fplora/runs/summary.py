"""`fplora runs`: what a spec's run holds, segment by segment, in global steps.

The answer to "which steps can I infer from or resume?" after a few resumes, without reading
musubi-tuner's per-segment file names.
"""

from __future__ import annotations

from dataclasses import dataclass

from fplora.runs.checkpoints import Checkpoint, find, segments_of
from fplora.runs.manifest import Segment
from fplora.spec.models import Spec


@dataclass(frozen=True)
class SegmentRow:
    segment: Segment
    loras: list[Checkpoint]
    states: list[Checkpoint]

    @property
    def status(self) -> str:
        seg = self.segment
        if seg.interrupted:
            return "interrupted"
        if seg.exit_code is None:
            return "running" if seg.started and not seg.ended else "unknown"
        return "finished" if seg.exit_code == 0 else f"failed (exit {seg.exit_code})"


def summarise(spec: Spec) -> list[SegmentRow]:
    out, name = spec.train.output_dir, spec.output_name
    found = find(out, name)
    rows = []
    for index, segment in enumerate(segments_of(out, name)):
        mine = sorted((c for c in found if c.segment == index), key=lambda c: (c.final, c.step or 0))
        rows.append(
            SegmentRow(segment, [c for c in mine if c.kind == "lora"], [c for c in mine if c.kind == "state"])
        )
    return rows


def steps_text(checkpoints: list[Checkpoint]) -> str:
    """`100, 200, ..., 1000, final` (at most the first two and last three listed)."""
    labels = [str(c.step) if c.step is not None and not c.final else "final" for c in checkpoints]
    if len(labels) > 6:
        labels = [*labels[:2], "…", *labels[-3:]]
    return ", ".join(labels) or "—"
