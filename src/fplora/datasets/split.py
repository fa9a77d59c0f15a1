"""The evaluation split: which records are held out of training, and which records are scored.

musubi-tuner's trainer trains on every cache file in a dataset's cache folder, so a record held out
of training must never be cached there: the training dataset goes to musubi-tuner as a copy without
the held-out lines (`plan.py`), and the evaluation records are a dataset entry of their own, with
their own cache folder, at `spec.eval_index` (`Spec.dataset_entry`).

A `fraction` split decides each record by a hash of its image path (as written, relative to the
JSONL) and the seed, not by drawing from the list of lines: adding records to a dataset never moves
an old record from training to evaluation, where it would be scored on after being trained on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from fplora.datasets.records import Record, Records, read_records
from fplora.problems import Problem, display_path, plural
from fplora.spec.models import Evaluation, Spec

RecordsOf = Callable[[int], Records]


def _share(seed: int, jsonl: Path, record: Record) -> float:
    """Where a record falls in [0, 1) for a fraction split: stable across edits of other lines."""
    image = record.image
    name = os.path.relpath(image, jsonl.parent) if image is not None else f"line {record.line}"
    digest = hashlib.blake2b(f"{seed}\0{name}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def held_out(evaluation: Evaluation, records: Records) -> set[int]:
    """Line numbers of `records` that evaluation takes out of training (none for a separate JSONL).

    A fraction split holds out at least one record, so that a small dataset still has something
    to score; record numbers that are not records are left to `problems` to report."""
    if evaluation.records is not None:
        return set(evaluation.records) & {r.line for r in records.items}
    if evaluation.fraction is None or not records.items:
        return set()
    shares = {r.line: _share(evaluation.seed, records.jsonl, r) for r in records.items}
    chosen = {line for line, share in shares.items() if share < evaluation.fraction}
    return chosen or {min(shares, key=lambda line: shares[line])}


def _without(records: Records, lines: set[int]) -> Records:
    if not lines:
        return records
    return replace(records, items=[r for r in records.items if r.line not in lines])


def training_records(spec: Spec, records: RecordsOf) -> RecordsOf:
    """A reader of each dataset's training records: the records as read, less the held-out ones."""
    evaluation = spec.eval

    def read(index: int) -> Records:
        found = records(index)
        if evaluation is None or evaluation.jsonl is not None or index != evaluation.dataset:
            return found
        return _without(found, held_out(evaluation, found))

    return read


def evaluation_records(spec: Spec, records: RecordsOf) -> Records | None:
    """The records `fplora eval` scores; None without an `eval:` section."""
    evaluation = spec.eval
    if evaluation is None:
        return None
    if evaluation.jsonl is not None:
        return read_records(evaluation.jsonl)
    if evaluation.dataset >= len(spec.datasets):
        return Records(spec.datasets[0].jsonl, [], [])
    found = records(evaluation.dataset)
    lines = held_out(evaluation, found)
    return replace(found, items=[r for r in found.items if r.line in lines])


def entry_records(spec: Spec, records: RecordsOf) -> RecordsOf:
    """A reader by cache entry (`Spec.cache_entries`): training records of each dataset, then the
    evaluation records at `spec.eval_index`. What `fplora cache` fills and `fplora train` checks."""
    training = training_records(spec, records)
    evaluation: list[Records] = []

    def read(index: int) -> Records:
        if index < len(spec.datasets):
            return training(index)
        if not evaluation:
            found = evaluation_records(spec, records)
            assert found is not None  # eval_index exists only with an eval section
            evaluation.append(found)
        return evaluation[0]

    return read


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def overlap(training: list[Records], evaluation: Records) -> list[tuple[Record, Record, str]]:
    """(evaluation record, training record, why) for each evaluation record that is also trained on:
    the same target image file, or the same caption with a byte-identical target image (a copy).

    Only records with the same file name or caption are compared, so a large dataset costs one
    dictionary lookup per record and a byte comparison only for suspicious pairs."""
    by_name: dict[str, list[Record]] = {}
    by_caption: dict[str, list[Record]] = {}
    for records in training:
        for record in records.items:
            if record.image is not None:
                by_name.setdefault(record.image.name, []).append(record)
            if record.caption is not None:
                by_caption.setdefault(record.caption, []).append(record)
    found = []
    for record in evaluation.items:
        if record.image is None:
            continue
        image = record.image
        same = next((t for t in by_name.get(image.name, []) if t.image and _same_file(t.image, image)), None)
        if same is not None:
            found.append((record, same, "the same target image"))
            continue
        for other in by_caption.get(record.caption or "\0", []):
            if other.image is not None and _same_bytes(other.image, record.image):
                found.append((record, other, "the same caption and a byte-identical target image"))
                break
    return found


def _share_problem(spec: Spec, fraction: float, held: int, total: int) -> list[Problem]:
    """A warning when a fraction split holds out a share far from the one asked (under half or over
    twice it): a small dataset cannot give 1 %, and at least one record is always held out, so
    `fraction: 0.01` of 4 records takes 1 of 4, a quarter of the training data."""
    share = held / total
    if fraction / 2 <= share <= fraction * 2:
        return []
    return [
        spec.problem(
            ("eval", "fraction"),
            f"{fraction:g} of {total} records holds out {plural(held, 'record')} ({share:.0%}), far from the"
            f" {fraction:.0%} asked",
            "name the records to hold out (`records: [3]`), or a fraction this dataset can give"
            f" (at least {1 / total:.2g})",
            "warning",
        )
    ]


def problems(spec: Spec, records: RecordsOf) -> list[Problem]:
    """What is wrong with the split: record numbers that are not records, an empty split, and
    evaluation records that are also trained on (an error unless `allow_training_records`)."""
    evaluation = spec.eval
    if evaluation is None or evaluation.dataset >= len(spec.datasets):
        return []  # a missing dataset is a spec rule's problem
    found: list[Problem] = []
    if evaluation.records is not None:
        source = records(evaluation.dataset)
        lines = {r.line for r in source.items}
        missing = [n for n in evaluation.records if n not in lines]
        if missing and not source.problems:
            found.append(
                spec.problem(
                    ("eval", "records"),
                    f"{', '.join(map(str, missing))}: no record on that line of"
                    f" {display_path(source.jsonl)} ({len(source.items)} records)",
                    "give line numbers of records (1-based)",
                )
            )
    scored = evaluation_records(spec, records)
    if scored is None:
        return found
    training = training_records(spec, records)
    kept = [training(i) for i in range(len(spec.datasets))]
    if evaluation.fraction is not None and evaluation.jsonl is None and scored.items:
        found.extend(
            _share_problem(
                spec, evaluation.fraction, len(scored.items), len(records(evaluation.dataset).items)
            )
        )
    if not scored.items:
        found.append(spec.problem(("eval",), "the evaluation split has no records", "hold out at least one"))
    elif evaluation.jsonl is None and len(scored.items) == len(records(evaluation.dataset).items):
        found.append(
            spec.problem(
                ("eval",),
                f"holds out every record of datasets[{evaluation.dataset}]: nothing would be trained on",
                "hold out fewer records",
            )
        )
    severity = "warning" if evaluation.allow_training_records else "error"
    fix = (
        "allowed by eval.allow_training_records: do not choose a checkpoint by this loss"
        if evaluation.allow_training_records
        else "remove it from one of the two, or set eval.allow_training_records: true for a sanity check"
    )
    for record, other, why in overlap(kept, scored):
        found.append(
            Problem(
                display_path(scored.jsonl),
                record.line,
                "eval",
                f"evaluation record is also a training record: {why} as"
                f" {display_path(other_jsonl(kept, other))} line {other.line}",
                fix,
                severity,
            )
        )
    return found


def other_jsonl(kept: list[Records], record: Record) -> Path:
    """The JSONL a training record came from, for the message."""
    return next(r.jsonl for r in kept if any(item is record for item in r.items))
