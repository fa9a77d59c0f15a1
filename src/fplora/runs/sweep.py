"""Which cells a sweep still has to make, and where its plans and logs go. (What the sweep worker
reads and prints is `protocol/sweep.py`.)

A cell is one (checkpoint, multiplier) pair with its memo-named folder. A cell is already produced
when its folder's `fplora-infer.json` holds a run of the same LoRA with the same settings (generate's
options and the prompt lines) whose files, still on disk, give every output kind for every prompt's
seed; a sweep skips such cells unless told to redo them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fplora.musubi.names import GenerateOutput
from fplora.runs.infer_folders import Pair

SWEEP_DIR_SUFFIX = "-sweeps"
"""`<save root>/<version>-sweeps/`: each sweep's plan and whole log, named by its start time."""


@dataclass(frozen=True)
class Written:
    """What a cell left in its folder, by output kind, judged against the prompts."""

    by_kind: dict[GenerateOutput, list[str]]
    missing: dict[GenerateOutput, int]  # kind → how many prompts have no file of it

    @property
    def complete(self) -> bool:
        return not any(self.missing.values())


def judge(folder: Path, names: list[str], outputs: tuple[GenerateOutput, ...], seeds: list[int]) -> Written:
    """Sort `names` (files in `folder`) by kind and count the prompts without a file of each kind.

    A prompt is matched by its seed, the only part of generate's file names that says which prompt
    wrote a file; prompts that share a seed need as many files."""
    by_kind: dict[GenerateOutput, list[str]] = {}
    missing: dict[GenerateOutput, int] = {}
    for kind in outputs:
        found = [n for n in names if kind.seed_re.match(n) and (folder / n).is_file()]
        by_kind[kind] = found
        have: dict[int, int] = {}
        for name in found:
            match = kind.seed_re.match(name)
            assert match is not None
            have[int(match.group(1))] = have.get(int(match.group(1)), 0) + 1
        wanted: dict[int, int] = {}
        for seed in seeds:
            wanted[seed] = wanted.get(seed, 0) + 1
        missing[kind] = sum(max(0, n - have.get(seed, 0)) for seed, n in wanted.items())
    return Written(by_kind, missing)


def produced(pair: Pair, outputs: tuple[GenerateOutput, ...], seeds: list[int]) -> bool:
    """Whether `pair`'s folder already holds this LoRA's files for every prompt, made with the same
    settings. `pair.record` is the folder's record as `folder_problem` read it, which has already
    refused a folder of other weights."""
    record = pair.record
    if not record or pair.identity is None:
        return False
    names = [
        name
        for run in record.get("runs", [])
        if isinstance(run, dict) and run.get("settings") == pair.settings and not run.get("error")
        for name in run.get("files") or []
        if isinstance(name, str)
    ]
    return judge(pair.save_path, names, outputs, seeds).complete
