"""Are a spec's caches complete, made with its settings, and from its data as it is now?

The caches live in the project's store (`datasets.store`), keyed by what they are computed from
(`datasets.cache_keys`); each dataset's cache folder is a view of links into it. Training and
evaluation refuse a view that misses a record's files, holds outdated ones (a caption edited, an
image replaced, a setting changed) or files of records no longer in the dataset (musubi-tuner's
trainer globs the folder).

`stamp_for` and `fingerprints` describe the caches for evaluation's setup: scores under other
cache settings or other records do not compare.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fplora.datasets import cache_keys, store
from fplora.datasets.records import Record, Records
from fplora.problems import Problem, display_path, plural
from fplora.render import commands
from fplora.render.files import RenderedPaths
from fplora.spec.models import Spec

FIX_CACHE = "run `fplora cache`: it computes what is missing and links the rest"
FIX = f"{FIX_CACHE} (or `fplora train --cache`)"


def stamp_for(spec: Spec, index: int) -> dict[str, Any]:
    """What the cache content depends on, besides the records themselves: the argv both cache scripts
    get (models, one-frame flags, pass-through options, the launch) and dataset `index`'s entry of the
    dataset.toml they read, both as rendered, so that nothing the scripts are given can be left out."""
    paths = RenderedPaths(spec.render_dir)
    return {
        "cache_latents": cache_keys.cache_argv(commands.cache_latents(spec, paths, cache_keys.STAMP_PYTHON)),
        "cache_text_encoder": cache_keys.cache_argv(
            commands.cache_text_encoder(spec, paths, cache_keys.STAMP_PYTHON)
        ),
        "dataset": cache_keys.dataset_settings(spec, index),
    }


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _file_key(path: Path) -> str:
    """(absolute path, size, mtime_ns): a replaced or touched image changes it; nothing is decoded."""
    name = os.fspath(path)
    if not os.path.isabs(name):
        name = os.path.abspath(name)
    try:
        info = os.stat(name)
    except OSError:
        return f"{name}\0missing"
    return f"{name}\0{info.st_size}\0{info.st_mtime_ns}"


def fingerprint(record: Record) -> dict[str, str]:
    """What a record's caches were computed from, as two short digests (64-bit: change detection).

    `caption`: the caption text exactly as musubi-tuner reads it (`data["caption"]` of the JSONL line,
    which fplora's absolute copy keeps verbatim) → the text-encoder cache. `images`: the target and
    control images in order, each by (absolute path, size, mtime_ns) → the latent cache.
    """
    images = [record.image, *record.controls] if record.image is not None else record.controls
    caption = "\0none" if record.caption is None else record.caption
    return {"caption": _digest(caption), "images": _digest("\0\0".join(_file_key(p) for p in images))}


def fingerprints(records: Records) -> dict[str, dict[str, str]]:
    """Fingerprints by image stem, the name musubi-tuner gives a record's cache files."""
    return {r.image.stem: fingerprint(r) for r in records.items if r.image is not None}


def views(
    spec: Spec, records: Callable[[int], Records], entries: Iterable[int] | None = None
) -> list[store.View]:
    """Each dataset entry's cache folder against the store (`entries`: default the datasets)."""
    where = store.Store(store.store_dir(spec))
    hashes = where.hashes()
    settings = cache_keys.settings_of(spec, hashes)
    found = [
        store.view_of(spec, index, records(index), where, settings, hashes)
        for index in (range(len(spec.datasets)) if entries is None else entries)
    ]
    for view in found:
        store.seal(where, view)
    hashes.save()
    return found


def only_links(spec: Spec, records: Callable[[int], Records], entries: Iterable[int] | None = None) -> bool:
    """Whether the cache folders lack only links to what the store already holds: nothing to compute,
    nothing stale, no file to remove (a new version of the same data, a deleted link). Linking needs
    neither a GPU nor musubi-tuner, so a command may do it rather than refuse."""
    found = views(spec, records, entries)
    return not all(v.complete for v in found) and all(
        v.complete or (not v.missing and not v.stale and not v.other_settings and not v.orphans)
        for v in found
    )


def _what_changed(view: store.View, record: Record) -> str:
    parts = [
        what
        for what, stale in (("caption", view.stale_text), ("images", view.stale_latents))
        if any(r is record for r in stale)
    ]
    return "its " + " and ".join(parts)


def problems(
    spec: Spec,
    records: Callable[[int], Records],
    entries: Iterable[int] | None = None,
    *,
    train_too: bool = True,
) -> list[Problem]:
    """Missing, outdated or extra cache files: training would fail, or train on what the data no
    longer says.

    `records` reads the records that belong in each folder: the training records (without the
    evaluation split's); `entries` (default: the datasets) may add `spec.eval_index`. `train_too`:
    the fixes offer `fplora train --cache` as well (not for a command that does not train)."""
    found = []
    for view in views(spec, records, entries):
        if view.complete:
            continue
        index = view.index
        where, line = display_path(view.directory), None
        key = "eval" if index == spec.eval_index else f"datasets[{index}]"
        stale = view.stale
        fix = FIX if train_too else FIX_CACHE
        if stale and view.other_settings:
            what = f"cache of {plural(view.records, 'record')} was made with other settings"
        elif stale:
            where, line = display_path(records(index).jsonl), stale[0].line
            what = (
                f"{len(stale)} of {plural(view.records, 'record')} changed since their caches were made"
                f" (the first: this line, {_what_changed(view, stale[0])});"
                f" the cache in {display_path(view.directory)} is stale"
            )
        elif view.compute_latents or view.compute_text or view.unreadable or view.to_link:
            latents = len(view.compute_latents) + len(view.unreadable)
            what = (
                f"cache of {plural(view.records, 'record')} misses {latents} latent"
                f" and {plural(len(view.compute_text), 'text-encoder file')}"
            )
            fix = "run `fplora cache` first" + (", or `fplora train --cache`" if train_too else "")
            if not latents and not view.compute_text:
                what = (
                    f"cache of {plural(view.records, 'record')}: {plural(view.to_link, 'file')}"
                    f" {'is' if view.to_link == 1 else 'are'} in the store but not linked"
                )
        else:
            what = (
                f"{len(view.orphans)} cache files belong to no record of the dataset (e.g."
                f" {view.orphans[0]}; records removed since caching?) and musubi-tuner would train on"
                " them too"
            )
            fix = "run `fplora cache`: it removes them from the cache folder"
        found.append(Problem(where, line, key, what, fix))
    return found
