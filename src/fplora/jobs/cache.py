"""`fplora cache`: latent and text-encoder caches for every dataset of a spec, shared through the store.

How musubi-tuner is run, and why this way: its cache scripts write into a dataset's
`cache_directory` under their own names, `--skip_existing` trusts any file that exists, a file is
written through whatever link has its name, and at the end they delete every cache file there
that the dataset does not name (unless `--keep_cache`). Pointed at a view folder, they would write
through the links into the store (changing an entry other versions use) and delete the links of
other records. So they never see the store or a view:

1. Every record is keyed (`datasets.cache_keys`); records whose entry is already in the store cost
   nothing but a link.
2. The rest go into a staging folder of this run (`.fplora/cache-store/staging/<pid>-<time>/`): a
   JSONL with only those records (one record per key: the same picture in two datasets with the same
   settings, or the same caption, is computed once) and a dataset.toml like the rendered one but
   naming those JSONL files and empty cache folders under staging. Each script with work runs once
   on it, without `--skip_existing` (the folders are empty) and without `--keep_cache` (nothing there
   to keep).
3. After a script exits 0, each file it wrote is checked (a whole safetensors file) and renamed into
   the store under its key: an entry appears complete or not at all. A crash or a failed script
   leaves only the staging folder, removed by the next run; nothing in it is ever taken as a cache.
4. Each view folder is then made to hold exactly one link per record and kind; files of removed
   records and outdated links go (the store keeps the entries until `fplora cache prune`).

A dry run writes the staging files under `staging/dry-run/` (as `--dry-run` renders files) and
prints the commands that would run; it links nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import tomli_w

from fplora import process
from fplora.atomic import write_atomic
from fplora.datasets import cache_keys, split, store
from fplora.datasets.hashes import ContentHashes
from fplora.datasets.records import Record, RecordCache, Records, absolute_jsonl
from fplora.jobs.context import Job, log_path
from fplora.musubi.names import TEXT_ENCODER_CACHE_SUFFIX, latent_cache_stem
from fplora.problems import Problem, UserError, display_path, plural
from fplora.render import commands
from fplora.render.files import RenderedPaths, dataset_dict, header
from fplora.spec.models import Spec

DRY_RUN = "dry-run"


def _summary(view: store.View) -> str:
    parts = [f"{view.linked} linked"]
    if view.to_link:
        parts.append(f"{view.to_link} in the store to link")
    if view.compute_latents or view.compute_text:
        parts.append(
            f"{plural(len(view.compute_latents), 'latent')} and"
            f" {plural(len(view.compute_text), 'text-encoder output')}"
            " to compute"
        )
    if view.unreadable:
        parts.append(
            f"{plural(len(view.unreadable), 'record')} with an unreadable image (see `fplora check`)"
        )
    if view.stale:
        made = "made with other settings" if view.other_settings else "outdated"
        whose = "record's" if len(view.stale) == 1 else "records'"
        parts.append(f"{len(view.stale)} {whose} files {made}: replaced")
    if view.orphans:
        parts.append(f"{plural(len(view.orphans), 'file')} of removed records: unlinked")
    return ", ".join(parts)


def _staging_toml(spec: Spec, folder: Path, kind: str, todo: dict[int, list[Record]]) -> Path:
    """dataset.toml for one script: the rendered entries, each naming its JSONL of records to compute
    and an empty cache folder under `folder`."""
    entries = sorted(todo)
    jsonls: dict[int, Path] = {}
    for index in entries:
        jsonl = folder / f"{kind}-{index}.jsonl"
        write_atomic(jsonl, absolute_jsonl(Records(jsonl, todo[index], [])))
        jsonls[index] = jsonl
    rendered = dataset_dict(spec, entries=entries)
    for index, entry in zip(entries, rendered["datasets"], strict=True):
        entry["image_jsonl_file"] = str(jsonls[index])
        entry["cache_directory"] = str(folder / kind / str(index))
    path = folder / f"{kind}.toml"
    write_atomic(path, header(spec) + tomli_w.dumps(rendered))
    return path


def _todo(views: list[store.View], kind: str) -> dict[int, list[tuple[str, Record]]]:
    """Records to compute by entry, one per key."""
    seen: set[str] = set()
    todo: dict[int, list[tuple[str, Record]]] = {}
    for view in views:
        for key, record in view.compute_latents if kind == store.LATENTS else view.compute_text:
            if key in seen:
                continue
            seen.add(key)
            todo.setdefault(view.index, []).append((key, record))
    return todo


def _adopt(
    where: store.Store,
    folder: Path,
    kind: str,
    settings: Callable[[int], str],
    todo: dict[int, list[tuple[str, Record]]],
) -> list[str]:
    """Move each staged file into the store; the records whose file is missing or broken."""
    failed = []
    for index, items in todo.items():
        staged = folder / kind / str(index)
        names = {p.name: p for p in staged.iterdir()} if staged.is_dir() else {}
        for key, record in items:
            assert record.image is not None
            stem = record.image.stem
            if kind == store.LATENTS:
                found = [
                    p for n, p in names.items() if n.startswith(stem + "_") and latent_cache_stem(n) == stem
                ]
            else:
                found = [p for n, p in names.items() if n == stem + TEXT_ENCODER_CACHE_SUFFIX]
            problem = "not written" if not found else store.staged_problem(found[0])
            if problem is not None:
                failed.append(f"{record.image.name} ({problem})")
                continue
            where.adopt(found[0], kind, settings(index), key)
    return failed


def run_cache(job: Job, *, rebuild: bool = False) -> int:
    """Compute what the store lacks for this spec's records, then make every cache folder a view.

    Nothing is started when every record's entries are in the store (loading the encoders alone
    costs GPU minutes); `rebuild` computes every record's entries again and replaces them.
    """
    spec = job.plan.spec
    running = job.run.training_pid
    if running is not None and not job.dry_run:
        raise UserError(
            Problem(
                display_path(spec.path),
                None,
                "",
                f"{spec.output_name} is training (pid {running}) from these caches; recomputing them now"
                " would change its data under it",
                "wait for the training to end, or stop it first",
            )
        )
    # each folder gets the records that belong in it: training records without the held-out ones,
    # then the evaluation split's in a folder of its own
    records = split.entry_records(spec, job.plan.records or RecordCache(spec))
    where = store.Store(store.store_dir(spec))
    hashes = where.hashes()
    settings = cache_keys.settings_of(spec, hashes)
    views = [
        store.view_of(spec, index, records(index), where, settings, hashes) for index in spec.cache_entries
    ]
    hashes.save()
    if rebuild:
        for view in views:
            _recompute_all(view, records(view.index), hashes)
    for view in views:
        label = "evaluation split" if view.index == spec.eval_index else f"dataset {view.index}"
        job.say(
            f"{label}: {display_path(records(view.index).jsonl)} ({plural(view.records, 'record')})"
            f" → cache {display_path(view.directory)} ({_summary(view)})"
        )
    latents, text = _todo(views, store.LATENTS), _todo(views, store.TEXT)
    if latents or text:
        code = _compute(job, where, views, latents, text)
        if code != 0:
            return code
        if job.dry_run:
            return 0
        # the store has them now: key the views again (one listing per store folder)
        where = store.Store(where.root)
        views = [store.view_of(spec, v.index, records(v.index), where, settings, hashes) for v in views]
    elif all(view.complete for view in views):
        job.say(f"caches are complete and match the spec: nothing to do (store {display_path(where.root)})")
        return 0
    if job.dry_run:
        job.say("nothing to compute; the cache folders would be linked to the store")
        return 0
    for view in views:
        store.link(view, where)
    missing = [v for v in views if not v.complete]
    if missing:
        job.say(f"some records have no cache: {_summary(missing[0])}", "red")
        return 1
    job.say(
        f"caches ready: {plural(sum(v.linked for v in views), 'file')} linked from {display_path(where.root)}"
    )
    return 0


def _recompute_all(view: store.View, records: Records, hashes: ContentHashes) -> None:
    """`--rebuild`: every record's entries are computed again."""
    view.compute_latents, view.compute_text = [], []
    for record in records.items:
        if record.image is None:
            continue
        latent = cache_keys.latent_content(record, hashes)
        if latent is not None:
            view.compute_latents.append((latent, record))
        view.compute_text.append((cache_keys.text_content(record), record))


def _compute(
    job: Job,
    where: store.Store,
    views: list[store.View],
    latents: dict[int, list[tuple[str, Record]]],
    text: dict[int, list[tuple[str, Record]]],
) -> int:
    spec = job.plan.spec
    paths = RenderedPaths(job.plan.paths.dir)
    run_name = DRY_RUN if job.dry_run else f"{os.getpid()}-{time.time_ns()}"
    if not job.dry_run:
        where.clear_staging(keep={DRY_RUN})
    folder = where.staging(run_name)
    settings = {v.index: v for v in views}
    steps: list[tuple[str, list[str], dict[int, list[tuple[str, Record]]]]] = []
    if latents:
        config = _staging_toml(
            spec, folder, store.LATENTS, {i: [r for _, r in todo] for i, todo in latents.items()}
        )
        steps.append(
            (store.LATENTS, commands.cache_latents(spec, paths, job.python, dataset_config=config), latents)
        )
    if text:
        config = _staging_toml(
            spec, folder, store.TEXT, {i: [r for _, r in todo] for i, todo in text.items()}
        )
        steps.append(
            (store.TEXT, commands.cache_text_encoder(spec, paths, job.python, dataset_config=config), text)
        )
    for _, argv, _ in steps:
        job.show(argv)
    if job.dry_run:
        return 0
    log = log_path(paths.dir / "logs", "cache")
    try:
        for kind, argv, todo in steps:
            result = process.run(argv, log=log)
            if result.returncode != 0:
                job.say(f"caching failed (exit {result.returncode}); log: {display_path(log)}", "red")
                return result.returncode
            pick = (
                (lambda i: settings[i].latent_settings)
                if kind == store.LATENTS
                else (lambda i: settings[i].text_settings)
            )
            failed = _adopt(where, folder, kind, pick, todo)
            if failed:
                shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
                job.say(f"musubi-tuner left no whole cache file for {shown}; log: {display_path(log)}", "red")
                return 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    job.say(f"computed into the store; log: {display_path(log)}")
    return 0
