"""`fplora cache status` and `fplora cache prune`: every version's view of the project's cache store.

The store (`datasets.store`) keeps entries that no version links any more (a caption edited, a record
removed, a setting changed), so that going back costs nothing. `status` says, per spec and dataset,
how many files are present (linked), in the store to link, missing (to compute) and stale (an
outdated file in the view), and the store's size; `prune` removes the entries no spec of the project
wants now, after showing them with `--dry-run`. `fplora cache SPEC` starts here too (`cache_spec`):
when its caches are already `complete` there is nothing to do, and nothing of a caching run is imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from fplora.check.jsonl import file_problem, unreadable
from fplora.datasets import caches, split, store
from fplora.datasets.records import RecordCache
from fplora.problems import Problem, UserError, byte_size, display_path, plural
from fplora.project import project_root
from fplora.spec import validate
from fplora.spec.load import DATASET_SNIPPET, extended, load, specs_under
from fplora.spec.models import Spec
from fplora.spec.source import Loaded

Say = Callable[[str], None]


def project_specs(root: Path) -> list[Path]:
    """Every spec under `<root>/configs/`, its subfolders' too (bases as well: what they cache is
    kept by prune). Those in `configs/archive/` were left out: prune took their caches for unused."""
    return specs_under(root / "configs")


def _load(paths: list[Path], *, project: bool = False) -> tuple[list[Spec], list[Problem]]:
    """The specs that load, and one problem per spec that does not, except, when `paths` are the
    project's own (`project`), a base another of them extends, or the dataset snippet: a base that
    is not a whole spec on its own (`fplora init`'s base.yaml names no dataset) caches nothing
    itself; the versions that extend it say what it uses. Each file is read once: which ones are
    bases comes from the same loads the specs are validated from."""
    loads: list[tuple[Path, Loaded | UserError]] = []
    for path in paths:
        try:
            loads.append((path, load(path)))
        except UserError as error:
            loads.append((path, error))
    exempt: set[Path] = set()
    if project:  # as `project.experiments` tells them apart
        exempt = {p.resolve() for p in paths if p.name == DATASET_SNIPPET}
        exempt |= extended(o for p, o in loads if isinstance(o, Loaded) and p.name != DATASET_SNIPPET)
    specs, problems = [], []
    for path, one in loads:
        if isinstance(one, Loaded):
            try:
                specs.append(validate(one))
                continue
            except UserError as error:
                one = error
        if path.resolve() in exempt:
            continue
        first = one.problems[0]
        problems.append(
            Problem(
                display_path(path),
                None,
                "",
                f"does not load ({first.key + ': ' if first.key else ''}{first.message})",
                "fix it, or move it out of configs/",
            )
        )
    return specs, problems


CACHE_MODELS = ("vae", "image_encoder", "text_encoder1", "text_encoder2")
"""The model files the two cache scripts take: the store keys their outputs by these files' content."""


def _models_not_here(spec: Spec) -> list[str]:
    """The spec's model files that caching keys by content and that are not on this machine (a shell
    without `FPLORA_MODELS_DIR`, a laptop): without them every store entry looks like another
    model's, none like this spec's."""
    return [key for key in CACHE_MODELS if not Path(getattr(spec.models, key)).is_file()]


def _models_problem(spec: Spec, missing: list[str]) -> Problem:
    return spec.problem(
        ("models", missing[0]),
        f"model files not found here ({', '.join(f'models.{k}' for k in missing)}), and the store keys"
        " caches by their content: which entries this spec uses cannot be told",
        "run it where `fplora cache` runs, with the same FPLORA_MODELS_DIR (or models.dir)",
    )


def _views(spec: Spec, records: RecordCache) -> list[store.View]:
    return caches.views(spec, split.entry_records(spec, records), spec.cache_entries)


def _records_problems(spec: Spec, records: RecordCache) -> list[Problem]:
    """What stops reading a dataset's records as written (its JSONL missing or unreadable, a line
    that is not a record): with them the records it caches cannot be told, so `status` says the
    problem instead of "0 records", and `prune` keeps everything rather than take that dataset's
    caches for unused. A file not read at all is said at the spec's `jsonl:` line, as `check` says
    it: the JSONL's path alone ("check datasets[].jsonl") did not tell which spec, and a renamed
    dataset folder is named."""
    problems = []
    for index in range(len(spec.datasets)):
        read = records(index)
        problems += [file_problem(spec, index, read)] if unreadable(read) else read.problems
    return problems


def complete(spec: Spec, say: Say, records: RecordCache | None = None) -> bool:
    """Every cache folder already links every record's files from the store, and every JSONL reads
    cleanly: then `fplora cache` needs no check, render or musubi-tuner, and says so. A no-op runs
    before each training (`fplora train --cache`) and must cost about a second at 10,000 records
    (benchmarks/cache_noop_10k.py): this reads the records, one stat per image (content hashes are
    remembered) and one listing per folder, and this module imports none of what a caching run needs."""
    records = records or RecordCache(spec)
    if any(records(index).problems for index in range(len(spec.datasets))):
        return False
    views = caches.views(spec, split.entry_records(spec, records), spec.cache_entries)
    if not all(view.complete for view in views):
        return False
    for view in views:
        say(f"{display_path(view.directory)}: {plural(view.linked, 'file')} linked")
    say(
        f"caches are complete and match the spec: nothing to do (store {display_path(store.store_dir(spec))})"
    )
    return True


def cache_spec(spec: Spec, *, rebuild: bool, dry_run: bool, no_rehearse: bool, say: Say) -> int:
    """`fplora cache SPEC`: nothing to do when the caches are `complete` (said with `say`), else
    check, render, rehearse and cache. One `RecordCache` serves both, so each JSONL is read once per
    command; what a caching run needs is imported only for one."""
    records = RecordCache(spec)
    if not (rebuild or dry_run) and complete(spec, say, records):
        return 0
    from fplora.jobs.cache import run_cache
    from fplora.jobs.context import open_job
    from fplora.jobs.rehearse import gate

    job = open_job(spec, dry_run=dry_run, records=records)
    return gate(job, skip=no_rehearse) or run_cache(job, rebuild=rebuild)


def status(paths: list[Path], say: Say, *, project: bool = False) -> int:
    """One line per spec and dataset, then the store's size; exit 1 when a spec does not load
    (of the project's own specs, `project`, a base that does not load on its own is left out)."""
    specs, problems = _load(paths, project=project)
    roots: set[Path] = set()
    for spec in specs:
        roots.add(store.store_dir(spec))
        if missing := _models_not_here(spec):
            found = _models_problem(spec, missing)
            say(f"{display_path(spec.path)}: {found.message} — {found.fix}")
            continue
        records = RecordCache(spec)
        if unread := _records_problems(spec, records):
            problems += unread
            continue
        entries = split.entry_records(spec, records)
        for view in _views(spec, records):
            label = "eval" if view.index == spec.eval_index else f"dataset {view.index}"
            compute = len(view.compute_latents) + len(view.compute_text) + len(view.unreadable)
            stale = len(view.stale_latents) + len(view.stale_text)
            say(
                f"{display_path(spec.path)}: {label}: {plural(view.records, 'record')}:"
                f" {view.linked} present,"
                f" {view.to_link} in the store to link, {compute} missing, {stale} stale,"
                f" {len(view.orphans)} of removed records"
                + (
                    f" — {_unreadable(view, entries(view.index).jsonl) or _todo(view)}"
                    if not view.complete
                    else ""
                )
            )
    for root in sorted(roots):
        files, total = store.size_of(store.Store(root))
        say(f"store {display_path(root)}: {plural(files, 'file')}, {byte_size(total)}")
    if problems:
        raise UserError(list(dict.fromkeys(problems)))  # specs sharing a broken JSONL: said once
    return 0


def _todo(view: store.View) -> str:
    """What to run for an incomplete view: links alone are made by `fplora train` itself."""
    if not (view.missing or view.stale or view.other_settings or view.orphans):
        return "nothing to compute: `fplora train` links them (or `fplora cache`)"
    return "run `fplora cache`"


def _unreadable(view: store.View, jsonl: Path) -> str | None:
    """The first record whose image cannot be read, at its line, with its file: `fplora cache` would
    refuse it, so "run `fplora cache`" is not what to do first."""
    if not view.unreadable:
        return None
    record = view.unreadable[0]
    keys = ["image_path", *(f"control_path_{k}" for k in range(len(record.controls)))]
    images = [record.image, *record.controls]
    key, path = next(
        ((k, p) for k, p in zip(keys, images, strict=True) if p is not None and not p.is_file()),
        (keys[0], record.image),
    )
    what = "not found" if path is not None and not path.exists() else "cannot be read"
    return (
        f"{display_path(jsonl)}:{record.line}: {key}: {display_path(path) if path else 'no image'} {what}:"
        " fix the record, then run `fplora cache` (`fplora check` lists every problem)"
    )


def prune(root: Path, *, dry_run: bool, say: Say) -> int:
    """Remove the store entries no spec under `<root>/configs/` wants now."""
    specs, problems = _load(project_specs(root), project=True)
    problems += [_models_problem(spec, missing) for spec in specs if (missing := _models_not_here(spec))]
    read = [(spec, RecordCache(spec)) for spec in specs]
    problems += [found for spec, records in read for found in _records_problems(spec, records)]
    if problems:
        raise UserError(
            list(dict.fromkeys(problems))
        )  # what a broken spec uses cannot be known: keep everything
    where = store.Store(root / store.STORE)
    if where.busy():
        raise UserError(
            Problem(
                display_path(where.root),
                None,
                "",
                "an `fplora cache` is running on this store",
                "prune after it ends",
            )
        )
    wanted: set[str] = set()
    for spec, records in read:
        for view in _views(spec, records):
            wanted |= {os.path.normpath(os.path.join(view.directory, t)) for t in view.want.values()}
    unused = [p for p in where.entries() if os.path.normpath(os.path.abspath(p)) not in wanted]
    total = sum(p.stat().st_size for p in unused)
    verb = "would remove" if dry_run else "removed"
    for path in unused[:10]:
        say(f"  {display_path(path)}")
    if len(unused) > 10:
        say(f"  ... and {len(unused) - 10} more")
    if not dry_run:
        for path in unused:
            path.unlink(missing_ok=True)
        where.drop_empty_folders()
    say(f"{verb} {len(unused)} store entries no spec uses ({byte_size(total)}); {len(wanted)} kept")
    return 0


def run_subcommand(word: str, specs: list[Path], *, dry_run: bool, say: Say) -> int:
    """`fplora cache status [SPEC...]` or `fplora cache prune [--dry-run]`, in the project this runs in."""
    root = project_root()
    if root is None:
        raise UserError(
            Problem(
                "command line",
                None,
                word,
                "not in an fplora project (no configs/ here or above): cd into the project",
            )
        )
    if word == "status":
        return status(specs, say) if specs else status(project_specs(root), say, project=True)
    return prune(root, dry_run=dry_run, say=say)
