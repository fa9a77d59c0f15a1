"""A training run's manifest: what ran, in which segments, and where each segment's steps start.

musubi-tuner restarts its step count at 0 when it resumes, and a resumed run in the same output
folder would overwrite the first run's `-stepNNNNNNNN` files. fplora therefore gives every resumed
segment its own output name (`<name>-r1`, `<name>-r2`, ...) and records the global step it starts
at, so `step5000` keeps meaning global step 5000 across resumes and nothing is overwritten.

The manifest is a file on disk that outlives the fplora that wrote it, and that a user may edit or a
disk may truncate, so it is validated when read: a manifest that cannot be read becomes one
`UnreadableManifest` line naming the file, never a traceback. Keys written by a newer fplora are
kept (read past, and written back unchanged); a newer `schema_version` is read but not written over.

Schema versions:
1. (no `schema_version` key) the resolved spec and rendered files at manifest level (the first
   segment's) and again in every segment.
2. each segment holds the spec it ran with and the files rendered from it, once; the manifest holds
   what is the run's (its name, spec file, the fplora and musubi-tuner that started it).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fplora.atomic import write_atomic
from fplora.problems import Problem, UserError, display_path

MANIFEST_SUFFIX = ".fplora-run.json"
SCHEMA_VERSION = 2


def now() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def segment_name(output_name: str, index: int) -> str:
    """The output name of a run's segment: the run's own for the first, `<name>-r<k>` for the k-th
    resume (musubi-tuner then writes `<name>-r<k>-step...` beside the first segment's files)."""
    return output_name if index == 0 else f"{output_name}-r{index}"


class UnreadableManifest(UserError):
    """A manifest that is not JSON or not a manifest: one problem naming the file.

    A command that needs the step offsets (train, resume, infer) stops on it; `fplora runs` catches
    it and shows what the run's files say without them."""


class _Record(BaseModel):
    # extra="allow": keys a newer fplora wrote are kept and saved back, not dropped or refused
    model_config = ConfigDict(extra="allow")


class Segment(_Record):
    """One musubi-tuner training process of the run: a first run or one resume."""

    output_name: str
    step_offset: int = 0  # global step of the state this segment resumed from (0 for the first)
    resumed_from: str | None = None
    num_processes: int = 1
    command: list[str] = Field(default_factory=list)
    log: str = ""
    started: str = ""  # empty for a segment fplora did not run (a run trained without fplora)
    ended: str | None = None
    exit_code: int | None = None
    interrupted: bool = False
    last_step: int | None = None  # the segment's own last step, parsed from its progress bar
    losses: list[float] = Field(default_factory=list)
    # what this segment ran with (a resume may run with a changed spec): the spec as resolved and
    # the files rendered from it; empty for a segment fplora did not run
    spec_resolved: dict[str, Any] = Field(default_factory=dict)
    rendered: dict[str, str] = Field(default_factory=dict)

    @property
    def end_step(self) -> int | None:
        """Global step at which this segment stopped, when known."""
        return None if self.last_step is None else self.step_offset + self.last_step


class Manifest(_Record):
    """The run: its segments in order, and what started it."""

    schema_version: int = SCHEMA_VERSION
    output_name: str
    spec: str = ""  # the spec file the run was started from
    fplora_version: str = ""
    musubi_tuner: dict[str, str] = Field(default_factory=dict)
    segments: list[Segment] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, raw: Any) -> Any:
        """Read a version 1 manifest as version 2: its manifest-level spec and rendered files were
        the first segment's, so they become that segment's when it lacks its own copy (a manifest
        from before per-segment copies). A placeholder segment 0 (`started` empty: trained
        without fplora) gets none: the manifest-level copy was the resume's spec, not its."""
        if not isinstance(raw, dict) or "schema_version" in raw:
            return raw
        raw = dict(raw)
        spec_resolved, rendered = raw.pop("spec_resolved", None), raw.pop("rendered", None)
        segments = raw.get("segments")
        if isinstance(segments, list) and segments and isinstance(segments[0], dict):
            first = dict(segments[0])
            if first.get("started") and not first.get("spec_resolved") and spec_resolved:
                first["spec_resolved"] = spec_resolved
                first["rendered"] = rendered or {}
            raw["segments"] = [first, *segments[1:]]
        raw["schema_version"] = SCHEMA_VERSION
        return raw

    @staticmethod
    def path_for(output_dir: Path, output_name: str) -> Path:
        return output_dir / f"{output_name}{MANIFEST_SUFFIX}"

    def segment_name(self, index: int) -> str:
        return segment_name(self.output_name, index)

    def save(self, output_dir: Path) -> Path:
        """Write the manifest whole, or not at all (temp file, then replace): a kill mid-write
        leaves the previous manifest, never half of one."""
        path = self.path_for(output_dir, self.output_name)
        if self.schema_version > SCHEMA_VERSION:
            # its writer may rely on what this fplora does not know to keep
            raise UnreadableManifest(
                Problem(
                    display_path(path),
                    None,
                    "",
                    f"was written by a newer fplora (manifest schema {self.schema_version}, this fplora"
                    f" writes {SCHEMA_VERSION}); not writing over it",
                    "upgrade fplora to train this run further",
                )
            )
        write_atomic(path, json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, output_dir: Path, output_name: str) -> Manifest | None:
        """The run's manifest, None when there is none; `UnreadableManifest` when it is broken."""
        path = cls.path_for(output_dir, output_name)
        if not path.is_file():
            return None
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as error:
            raise UnreadableManifest(_unreadable(path, _first_error(error))) from None
        except OSError as error:
            raise UnreadableManifest(_unreadable(path, error.strerror or str(error))) from None


def _first_error(error: ValidationError) -> str:
    """The first thing wrong, short: `segments.0.step_offset: Input should be a valid integer`."""
    first = error.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return f"not valid JSON ({first.get('ctx', {}).get('error', first['msg'])})"
    where = ".".join(str(part) for part in first["loc"]) or "the file"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _unreadable(path: Path, reason: str) -> Problem:
    return Problem(
        display_path(path),
        None,
        "",
        f"unreadable run manifest: {reason}",
        "fix it by hand, or move it aside (the run's files are then read without their resumed"
        " segments' step offsets)",
    )
