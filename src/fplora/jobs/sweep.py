"""`fplora infer` over a grid of checkpoints × multipliers, in one worker process that loads once.

A separate generate process per (LoRA, multiplier) spends ~95 s loading models for seconds of
generation. The sweep worker (`fplora/worker/sweep.py`, run in the musubi-tuner Python) loads the
encoders once, encodes the prompts once, and makes each cell with the DiT loaded with that cell's
LoRA by musubi-tuner's own loader. This module decides what the worker makes (cells already made
with the same settings are skipped), writes its plan, starts it through `accelerate launch`, and
turns its events into progress, the folders' records and logs, and an exit code: a cell that fails
is reported while the others go on, and any failure makes the command fail.

Each cell's folder, files, `fplora-infer.json` entry and `generate.log` section are those a separate
generate run would leave (the record's entry also names the sweep's log), so the two ways are
interchangeable and `fplora infer --no-sweep` remains to compare against.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress

from fplora import process
from fplora.atomic import write_atomic
from fplora.jobs.context import Job, log_tail, timestamp, worker_progress
from fplora.musubi.names import GENERATE_OUTPUTS, GenerateOutput
from fplora.problems import display_path, note, plural
from fplora.protocol.sweep import cell_id, parse_event, plan_json
from fplora.render import commands
from fplora.runs.infer_folders import GENERATE_LOG, Pair, begin_run, log_header, save_root, write_record
from fplora.runs.loras import describe
from fplora.runs.manifest import now
from fplora.runs.sweep import SWEEP_DIR_SUFFIX, judge, produced
from fplora.runtime import worker_commit


@dataclass
class _Cell:
    pair: Pair
    record: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    outcome: str = ""  # "", "done" or "failed"


@dataclass
class _Sweep:
    """The running sweep: its cells by id, the one being made, and what has been said."""

    job: Job
    command: str
    log: Path
    outputs: tuple[GenerateOutput, ...]
    seeds: list[int]
    cells: dict[str, _Cell]
    progress: Progress | None = None
    task: Any = None
    current: _Cell | None = None
    error: str = ""
    started: float = field(default_factory=time.monotonic)

    def on_line(self, line: str) -> None:
        event = parse_event(line)
        if event is None:
            if self.current is not None:
                with (self.current.pair.save_path / GENERATE_LOG).open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
            return
        kind = event["event"]
        if kind == "phase":
            self._describe(str(event.get("phase", "")))
        elif kind == "ready":
            seconds = float(event.get("seconds", 0))
            self.job.say(
                f"models loaded and {plural(int(event.get('prompts') or 0), 'prompt')}"
                f" encoded in {seconds:.0f} s"
            )
        elif kind == "cell_started" and event.get("cell") in self.cells:
            self._start(self.cells[event["cell"]])
        elif kind in ("cell_done", "cell_failed") and event.get("cell") in self.cells:
            self._end(self.cells[event["cell"]], event)
        elif kind == "error":
            self.error = str(event.get("error", ""))

    def _describe(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text)

    def _start(self, cell: _Cell) -> None:
        pair = cell.pair
        cell.record, cell.run = begin_run(pair, self.command, sweep_log=str(self.log))
        log_header(pair.save_path / GENERATE_LOG, self.command, pair)
        self.current = cell
        self._describe(f"{pair.checkpoint.label} ×{pair.multiplier}")

    def _end(self, cell: _Cell, event: dict[str, Any]) -> None:
        pair, run = cell.pair, cell.run
        files = [str(f) for f in event.get("files") or []]
        written = judge(pair.save_path, files, self.outputs, self.seeds)
        reason = str(event.get("error") or "")
        if not reason and not written.complete:
            reason = "the worker reported no error, but files are missing"
        cell.outcome = "failed" if reason else "done"
        if cell.record is not None and run is not None:
            run.update(ended=now(), files=files, seconds=event.get("seconds"))
            if reason:
                run["error"] = reason
            write_record(pair.save_path, cell.record)
        self.current = None
        self._say(cell, written.by_kind, written.missing, reason, event.get("seconds"))
        if self.progress is not None:
            self.progress.advance(self.task)

    def _say(
        self,
        cell: _Cell,
        by_kind: dict[GenerateOutput, list[str]],
        missing: dict[GenerateOutput, int],
        reason: str,
        seconds: Any,
    ) -> None:
        pair = cell.pair
        what = f"{pair.checkpoint.label} ×{pair.multiplier}"
        folder = display_path(pair.save_path)
        count = len(self.seeds)
        if not reason:
            counts = ", ".join(plural(len(by_kind[k]), k.noun) for k in reversed(self.outputs))
            took = f" ({float(seconds):.0f} s)" if isinstance(seconds, int | float) else ""
            self.job.say(f"{what}: {counts} in {folder}{took}", "green")
            return
        short = ", ".join(f"{count - missing[k]} of {plural(count, k.noun)}" for k in reversed(self.outputs))
        self.job.say(
            f"{what}: failed, {short} written; log: {display_path(pair.save_path / GENERATE_LOG)}", "red"
        )
        self.job.say(f"  {reason}", "red")

    def finish(self, result: process.Result) -> int:
        """Close cells the worker never finished; the command's exit code."""
        unfinished = [c for c in self.cells.values() if not c.outcome]
        stopped = f"the worker stopped (exit {result.returncode})"
        for cell in unfinished:
            if cell.run is not None and cell.record is not None:
                cell.run.update(ended=now(), files=[], error=f"{stopped} while making this cell")
                write_record(cell.pair.save_path, cell.record)
            cell.outcome = "failed"
        if unfinished:
            why = self.error or stopped
            made = f"{plural(len(unfinished), 'cell')} not made"
            self.job.say(f"{made}: {why}; log: {display_path(self.log)}", "red")
            if not self.error:
                for line in log_tail(self.log):
                    self.job.say(f"  {line}", "red")
        failed = sum(c.outcome == "failed" for c in self.cells.values())
        total = len(self.cells)
        elapsed = time.monotonic() - self.started
        self.job.say(
            f"{total - failed} of {total} cells made every file in {elapsed:.0f} s",
            "red" if failed else "green",
        )
        if result.interrupted:
            return 130
        return 1 if failed or result.returncode != 0 else 0


def to_make(job: Job, pairs: list[Pair], *, redo: bool) -> tuple[list[Pair], list[Pair]]:
    """(cells to make, cells skipped as already made with these settings)."""
    if redo:
        return pairs, []
    outputs = GENERATE_OUTPUTS[job.plan.spec.infer.output_type]
    seeds = [line.seed for line in job.plan.infer_prompts]
    done = [p for p in pairs if produced(p, outputs, seeds)]
    made = {id(p) for p in done}
    return [p for p in pairs if id(p) not in made], done


def run_sweep(job: Job, pairs: list[Pair], *, command: str, redo: bool = False) -> int:
    """Make every cell of `pairs` not made yet in one worker process; 0 when all were made."""
    spec = job.plan.spec
    todo, skipped = to_make(job, pairs, redo=redo)
    if skipped:
        job.report(
            [
                note(
                    f"{len(skipped)} of {len(pairs)} cells already hold this LoRA's files for every prompt,"
                    " made with these settings: skipped (--redo makes them again)"
                )
            ]
        )
    if not todo:
        job.say("nothing to generate")
        if not job.dry_run:
            make_sheets(job)
        return 0
    folder = save_root(spec) / f"{spec.version}{SWEEP_DIR_SUFFIX}"
    stamp = timestamp()
    plan_file, log = folder / f"{stamp}.json", folder / f"{stamp}.log"
    argv = commands.sweep(spec, job.python, plan_file)
    text = plan_json(commands.sweep_generate_args(spec, job.plan.paths), todo)
    if job.dry_run:
        job.show(argv)
        job.say(f"dry run: one worker process would make {len(todo)} cells (its plan file is not written):")
        for pair in todo:
            job.say(f"  {describe(pair.checkpoint)} ×{pair.multiplier:g} → {display_path(pair.save_path)}")
        return 0
    job.report(worker_commit(job.python, "sweep"))
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(plan_file, text)
    job.show(argv)
    job.say(
        f"{plural(len(todo), 'cell')} × {plural(len(job.plan.infer_prompts), 'prompt')} in one process;"
        f" log: {display_path(log)}"
    )
    outputs = GENERATE_OUTPUTS[spec.infer.output_type]
    seeds = [line.seed for line in job.plan.infer_prompts]
    cells = {cell_id(i): _Cell(pair) for i, pair in enumerate(todo)}
    sweep = _Sweep(job, command, log, outputs, seeds, cells)
    with (
        worker_progress(job, "starting the sweep worker", len(todo)) as (progress, task),
        open(os.devnull, "wb") as quiet,
    ):
        sweep.progress, sweep.task = progress, task
        result = process.run(argv, log=log, on_line=sweep.on_line, echo=quiet)
    code = sweep.finish(result)
    make_sheets(job)
    return code


def make_sheets(job: Job) -> None:
    """The version's contact sheets, from every infer folder of it (a drawing failure is said, and
    fails nothing: the images are made)."""
    from fplora.sheet.draw import build

    spec = job.plan.spec
    try:
        indexes = build(save_root(spec), spec.version)
    except OSError as error:
        job.say(f"contact sheets not written: {error}", "red")
        return
    for index in indexes:
        job.say(f"contact sheets: {display_path(index)}")
