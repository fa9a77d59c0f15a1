"""`fplora check`: everything on disk a spec depends on, verified before any GPU time is spent.

The spec itself is already valid when it gets here (`load_spec`); this looks at the files it names:
the five models and their safetensors headers (`check.models`), every dataset record and image
(`check.records`, and the JSONL's raw lines in `check.jsonl`), and the sample and inference prompts
(`check.prompts`), files named by pass-through options (`check.passthrough`) and the folders runs
write into (`check.outputs`); option combinations that fail on the GPU (`spec.rules.combinations`,
from the GPU option matrix). It returns every problem at once so that one run shows the whole list.
Every image is decoded once (`check.images`), and the verdict kept in the project's `.fplora/`
(`check.verified`), the only thing a check writes: a repeated check of a 10,000-record one-frame
dataset (30,000 images) only looks at the files' sizes and times.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from itertools import chain

from fplora.check.captions import caption_length_problems, caption_problems, prompt_length_problems
from fplora.check.launch import check_launch
from fplora.check.models import check_models
from fplora.check.outputs import check_output_folders
from fplora.check.passthrough import check_pass_through_files
from fplora.check.prompts import check_prompts, prompt_paths
from fplora.check.records import MAX_SAME_WARNING, check_records, record_paths
from fplora.check.run_names import check_run_names
from fplora.check.verified import verify_many
from fplora.datasets import split
from fplora.datasets.records import RecordCache, Records, read_records
from fplora.problems import Problem
from fplora.runs.catalogue import Catalogue
from fplora.spec.models import Spec
from fplora.spec.rules import spec_warnings
from fplora.spec.rules.combinations import check_combinations
from fplora.state import project_state

__all__ = ["check_spec"]


def check_spec(
    spec: Spec,
    *,
    skip_models: bool = False,
    records: Callable[[int], Records] | None = None,
    progress: bool = True,
    run: Catalogue | None = None,
) -> list[Problem]:
    """Every problem with the files `spec` names; warnings have `severity="warning"`.

    `records` is a command's record reader, shared with rendering.
    `skip_models` leaves out the model files, for checking data on a machine without the models.
    `run` is a command's catalogue of the spec's run, shared with the job.
    `progress`: a bar on a terminal while images are decoded for the first time, past a few seconds.
    Order: the spec's own warnings, models, then each dataset in line order, then prompts.
    """
    problems: list[Problem] = spec_warnings(spec)
    if not skip_models:
        problems.extend(check_models(spec))
    read = records or RecordCache(spec)  # a command passes its own, so the files are read once
    datasets = [read(index) for index in range(len(spec.datasets))]
    # a separate evaluation JSONL is checked like a dataset; held-out records already are
    separate = read_records(spec.eval.jsonl) if spec.eval is not None and spec.eval.jsonl else None
    scored = [separate] if separate is not None else []
    paths = chain(*(record_paths(found) for found in [*datasets, *scored]), prompt_paths(spec))
    # verdicts are remembered for a spec read from a file (one built in code has no project)
    state = project_state(spec.path) if spec.path.is_file() else None
    images = verify_many(paths, state, progress=progress)
    for index, found in enumerate(datasets):
        problems.extend(check_records(spec, index, found, images))
        problems.extend(caption_length_problems(found, MAX_SAME_WARNING))
    if separate is not None and spec.eval_index is not None:
        problems.extend(check_records(spec, spec.eval_index, separate, images))
    problems.extend(split.problems(spec, read))
    problems.extend(check_prompts(spec, datasets, images))
    problems.extend(prompt_length_problems(spec))
    problems.extend(caption_problems(spec, read, strict=False))
    problems.extend(check_launch(spec))
    problems.extend(check_combinations(spec))
    problems.extend(check_pass_through_files(spec))
    problems.extend(check_output_folders(spec))
    problems.extend(check_run_names(spec, run))
    return grouped(problems)


GROUP_FROM = 3
"""Identical errors on this many records or more are one line: a mistake of the spec (a control image
too few for clean_indices, a wrong image folder) would otherwise print a line per record."""
_PATHS = re.compile(r"\S*[/\\]\S*|\S+\.(?:png|jpe?g|webp|bmp|gif|tiff?)\b", re.IGNORECASE)


def _lines_text(lines: list[int]) -> str:
    shown = ", ".join(str(line) for line in lines[:5])
    return f"line{'s' if len(lines) > 1 else ''} {shown}{', …' if len(lines) > 5 else ''}"


def _record_error(problem: Problem) -> bool:
    return problem.severity == "error" and problem.line is not None and problem.file.endswith(".jsonl")


def grouped(problems: list[Problem]) -> list[Problem]:
    """Errors at record lines that differ only in the line and the file a record names, as one
    problem: the first, with `(and 9,999 more records: lines 2, 3, 4, 5, 6, …)`. Warnings keep
    their own caps (`check.records.MAX_SAME_WARNING`)."""
    groups: dict[tuple[str, str, str, str], list[Problem]] = {}
    for problem in problems:
        if _record_error(problem):
            shape = (problem.file, problem.key, _PATHS.sub("<path>", problem.message), problem.fix)
            groups.setdefault(shape, []).append(problem)
    out = []
    for problem in problems:
        if not _record_error(problem):
            out.append(problem)
            continue
        shape = (problem.file, problem.key, _PATHS.sub("<path>", problem.message), problem.fix)
        same = groups[shape]
        if len(same) < GROUP_FROM:
            out.append(problem)
        elif problem is same[0]:
            rest = sorted(p.line for p in same[1:] if p.line is not None)
            more = f" (and {len(rest):,} more records: {_lines_text(rest)})"
            out.append(replace(problem, message=problem.message + more))
    return out
