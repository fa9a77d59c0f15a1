"""A run's folder read once per command: its segments (the manifest), checkpoints and states, the
evaluation scores and whether a training holds its lock. Decisions (which LoRAs to infer with,
which state to resume, what `fplora runs` lists) query this one object instead of scanning the
folder and reading the manifest again each.

Each part is read when first asked for and kept: a command that never needs the scores never reads
them, and a broken file is refused where it is needed (the same `UserError` every time it is asked
for, never read twice). The catalogue is what the folder held when the command looked: a job that
changes the run (a training segment) records what it changes itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from fplora.musubi.names import lora_final_file, lora_step_file, state_step_dir
from fplora.problems import Problem, UserError, display_path
from fplora.runs import evaluation
from fplora.runs.checkpoints import (
    BEST,
    Checkpoint,
    available,
    parse_step,
    scan,
    segments_on_disk,
    unknown_word,
)
from fplora.runs.evaluation import EvalFile
from fplora.runs.lock import holder, lock_path
from fplora.runs.manifest import Manifest, Segment, UnreadableManifest
from fplora.spec.models import Spec

_UNREAD = object()


class Catalogue:
    """What one run (`output_dir`, `output_name`) holds, read at most once each."""

    def __init__(self, output_dir: Path, output_name: str) -> None:
        self.output_dir = output_dir
        self.output_name = output_name
        self._read: dict[str, object] = {}

    @classmethod
    def of(cls, spec: Spec) -> Catalogue:
        return cls(spec.train.output_dir, spec.output_name)

    def _once(self, part: str, read: Callable[[], object]) -> object:
        """`read()` the first time `part` is asked for; its result, or its UserError, after that."""
        found = self._read.get(part, _UNREAD)
        if found is _UNREAD:
            try:
                found = read()
            except UserError as error:
                found = error
            self._read[part] = found
        if isinstance(found, UserError):
            raise found
        return found

    @property
    def manifest(self) -> Manifest | None:
        """The run's manifest; None when there is none; `UnreadableManifest` when it is broken."""
        found = self._once("manifest", lambda: Manifest.load(self.output_dir, self.output_name))
        assert found is None or isinstance(found, Manifest)
        return found

    @property
    def segments(self) -> list[Segment]:
        """The run's segments (a run without a manifest is one segment from step 0);
        `UnreadableManifest` when the manifest is broken."""
        manifest = self.manifest
        if manifest and manifest.segments:
            return manifest.segments
        return [Segment(output_name=self.output_name)]

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """Every LoRA file and state folder, in segment then step order, at global steps."""
        found = self._once("checkpoints", lambda: scan(self.output_dir, self.segments))
        assert isinstance(found, list)
        return found

    def listing(self) -> tuple[list[Segment], list[Checkpoint], list[Problem]]:
        """Segments and checkpoints as far as they can be read, and what kept them from being whole:
        with an unreadable manifest, the segments the file names show, each counted from step 0."""
        try:
            return self.segments, self.checkpoints, []
        except UnreadableManifest as error:
            segments = segments_on_disk(self.output_dir, self.output_name)
            return segments, scan(self.output_dir, segments), error.problems

    def of_kind(self, kind: str) -> list[Checkpoint]:
        return [c for c in self.checkpoints if c.kind == kind]

    @property
    def training_pid(self) -> int | None:
        """The process holding the run's lock (a training running now), or None."""
        found = self._once("lock", lambda: holder(self.lock))
        assert found is None or isinstance(found, int)
        return found

    @property
    def lock(self) -> Path:
        return lock_path(self.output_dir, self.output_name)

    @property
    def scores(self) -> EvalFile | None:
        """The run's evaluation scores (`fplora eval`); None when there are none."""
        found = self._once("scores", lambda: evaluation.load(self.output_dir, self.output_name))
        assert found is None or isinstance(found, EvalFile)
        return found

    # -- which checkpoint a word names (`stepN`, `latest`, `final`, `best`, a path) -----------------

    def _best_word(self, kind: str) -> str:
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
        out, name = self.output_dir, self.output_name
        scores = self.scores
        if scores is None:
            raise evaluation.no_evaluation(out, name, f"no evaluation of {name} yet (no eval.json)")
        point = scores.best()
        if point is None:
            raise evaluation.no_evaluation(
                out, name, f"the evaluation of {name} scores no trained checkpoint"
            )
        if point.lora is not None and Path(point.lora).is_file():
            return point.lora
        if point.step is None:
            raise evaluation.no_evaluation(out, name, f"the best LoRA {point.lora} is gone")
        if not any(c.step == point.step for c in self.of_kind("lora")):
            # its file deleted: "no LoRA at global step 2" did not say that `best` meant step 2
            there = {c.path.resolve() for c in self.of_kind("lora")}
            left = [p for p in scores.points if p.lora is not None and Path(p.lora).resolve() in there]
            runner_up = min(
                left, key=lambda p: (p.loss, p.step if p.step is not None else math.inf), default=None
            )
            raise UserError(
                Problem(
                    display_path(out),
                    None,
                    "",
                    f"--lora best: the best-scored LoRA, {point.label} (loss {point.loss:.5f}),"
                    " is no longer there",
                    f"the best-scored of those left is {runner_up.label} (loss {runner_up.loss:.5f}): --lora"
                    f" {runner_up.label}"
                    if runner_up is not None
                    else "run `fplora eval` on the checkpoints there",
                )
            )
        return f"step{point.step}"

    def expected(self, which: str, kind: str) -> Checkpoint | None:
        """The checkpoint `which` will name once trained (a first run's), for dry runs before
        training: `stepN`, and for LoRAs `final`/`latest` (the final file); None when there is no
        such name.

        Once the run has checkpoints of this kind a dry run must fail where the real command fails,
        so there is no future name then."""
        if self.of_kind(kind):
            return None
        out, name = self.output_dir, self.output_name
        step = parse_step(which)
        if step is not None:
            file = lora_step_file(name, step) if kind == "lora" else state_step_dir(name, step)
            return Checkpoint(out / file, kind, step, 0, False)
        if kind == "lora" and which in ("latest", "final"):
            return Checkpoint(out / lora_final_file(name), kind, None, 0, True)
        return None

    def resolve(self, which: str, kind: str) -> Checkpoint:
        """`latest`, `final`, `stepN`, `best` (LoRAs) or a path → one checkpoint of `kind` ("lora"
        or "state"). `best` is the LoRA with the lowest evaluation loss in the run's eval.json."""
        if which == BEST:
            which = self._best_word(kind)
        as_path = Path(which).expanduser()
        step = parse_step(which)
        if which not in ("latest", "final") and step is None:
            if as_path.exists():
                # a file of this run: its name holds only its segment's own step, the manifest the offset
                resolved = as_path.resolve()
                for found in self.of_kind(kind):
                    if found.path.resolve() == resolved:
                        return found
                return Checkpoint(resolved, kind, None, -1, False)
            raise UserError(unknown_word(which, kind))
        candidates = self.of_kind(kind)
        what = "LoRA" if kind == "lora" else "state"
        where = display_path(self.output_dir)
        if not candidates:
            loras = sorted({c.step for c in self.of_kind("lora") if c.step is not None})
            if kind == "state" and loras:
                # the states deleted (or never saved) while its LoRAs are there: "train first" was
                # wrong, and a plain train refuses the run's folder
                raise UserError(
                    Problem(
                        where,
                        None,
                        "",
                        f"no state of {self.output_name} found, only LoRAs ({available(loras, loras[-1])}):"
                        " a run continues only from a state",
                        "start a new version (a new spec file); to begin from a LoRA's weights, set"
                        " musubi.config.network_weights to it there",
                    )
                )
            raise UserError(
                Problem(
                    where,
                    None,
                    "",
                    f"no {what} of {self.output_name} found",
                    "train first (save_state: true for states)" if kind == "state" else "train first",
                )
            )
        if which == "final":
            finals = [c for c in candidates if c.final]
            if not finals:
                raise UserError(
                    Problem(where, None, "", f"{self.output_name} has no final {what} yet", "use latest")
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
                    where,
                    None,
                    "",
                    f"no {what} at global step {step}",
                    f"available: {available(steps, step)}",
                )
            )
        return max(matching, key=lambda c: (c.segment, not c.final))

    def newest_lora(self) -> Checkpoint | None:
        """What `latest` names among the LoRAs, or None when there is none."""
        try:
            return self.resolve("latest", "lora")
        except UserError:
            return None

    def same_step(self, chosen: Checkpoint) -> list[Checkpoint]:
        """Other segments' checkpoints at the chosen one's global step.

        Resuming from an older state (`--resume step20` after a segment ran to step 40) starts a
        second line of training over the same global steps; `stepN` then picks the newest segment,
        and the user should hear that an older one exists (reachable by its path)."""
        if chosen.step is None or chosen.final:
            return []
        return [
            found
            for found in self.of_kind(chosen.kind)
            if found.step == chosen.step and not found.final and found.segment != chosen.segment
        ]
