"""A training run's manifest: what ran, in which segments, and where each segment's steps start.

musubi-tuner restarts its step count at 0 when it resumes, and a resumed run in the same output
folder would overwrite the first run's `-stepNNNNNNNN` files. fplora therefore gives every resumed
segment its own output name (`<name>-r1`, `<name>-r2`, ...) and records the global step it starts
at, so `step5000` keeps meaning global step 5000 across resumes and nothing is overwritten.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fplora.atomic import write_atomic
from fplora.problems import Problem, note

MANIFEST_SUFFIX = ".fplora-run.json"


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


@dataclass
class Segment:
    output_name: str
    step_offset: int  # global step of the state this segment resumed from (0 for the first)
    resumed_from: str | None
    num_processes: int
    command: list[str]
    log: str
    started: str
    ended: str | None = None
    exit_code: int | None = None
    interrupted: bool = False
    last_step: int | None = None  # the segment's own last step, parsed from its progress bar
    losses: list[float] = field(default_factory=list)
    # what this segment ran with: the spec as resolved and the files rendered from it (a resume may
    # run with a changed spec; the manifest-level copies are the first segment's)
    spec_resolved: dict[str, Any] = field(default_factory=dict)
    rendered: dict[str, str] = field(default_factory=dict)

    @property
    def end_step(self) -> int | None:
        """Global step at which this segment stopped, when known."""
        return None if self.last_step is None else self.step_offset + self.last_step


@dataclass
class Manifest:
    output_name: str
    spec: str
    spec_resolved: dict[str, Any]
    rendered: dict[str, str]
    fplora_version: str
    musubi_tuner: dict[str, str]
    segments: list[Segment] = field(default_factory=list)

    @staticmethod
    def path_for(output_dir: Path, output_name: str) -> Path:
        return output_dir / f"{output_name}{MANIFEST_SUFFIX}"

    def segment_name(self, index: int) -> str:
        return self.output_name if index == 0 else f"{self.output_name}-r{index}"

    def save(self, output_dir: Path) -> Path:
        path = self.path_for(output_dir, self.output_name)
        write_atomic(path, json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, output_dir: Path, output_name: str) -> Manifest | None:
        path = cls.path_for(output_dir, output_name)
        if not path.is_file():
            return None
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["segments"] = [Segment(**s) for s in raw.get("segments", [])]
        return cls(**raw)


def foreign_run_note(output_dir: Path, output_name: str, spec_path: Path) -> Problem | None:
    """A warning when the run under this output name was trained from another spec file.

    Two projects with the same `project:`, version and `output_dir` share one run; the second
    would infer from, list or resume the first one's checkpoints as its own."""
    manifest = Manifest.load(output_dir, output_name)
    if manifest is None or not manifest.spec:
        return None
    if Path(manifest.spec).resolve() == spec_path.resolve():
        return None
    return note(
        f"run {output_name} was trained from {manifest.spec}, not from this spec — if that is"
        " another project, give this one its own project: or train.output_dir"
    )
