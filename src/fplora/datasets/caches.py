"""Latent and text-encoder caches: are they complete, made with these settings, and from this data?

musubi-tuner's cache names encode neither the one-frame settings nor the dataset version, and
`--skip_existing` only checks that a file exists: a caption edited or an image replaced after caching
keeps its old cache file. fplora writes a stamp beside the caches after a successful `fplora cache`:
the settings the caches depend on, and one fingerprint per record (see `fingerprint`). Training
refuses caches whose stamp does not match the spec and the dataset as they are now.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fplora.atomic import write_atomic
from fplora.datasets.records import Record, Records, read_records
from fplora.musubi.names import latent_cache_stem, text_encoder_cache_file, text_encoder_cache_stem
from fplora.problems import Problem, display_path
from fplora.render import commands
from fplora.render.files import RenderedPaths, dataset_dict
from fplora.spec.models import Spec

STAMP = "fplora-cache.json"
FINGERPRINTS = "fingerprints"  # stamp key: the fingerprint format version
RECORDS = "records"  # stamp key: image stem -> {"caption": digest, "images": digest}
FINGERPRINT_VERSION = 1
FIX = "run `fplora cache`: it recomputes the changed records (or `fplora train --cache`)"


STAMP_PYTHON = "python"  # the interpreter's path is no setting of the caches
NOT_CACHE_SETTINGS = frozenset({"image_jsonl_file", "cache_directory", "batch_size", "num_repeats"})
"""dataset.toml keys that do not change what a cache file holds: where records and caches live
(the records are fingerprinted one by one) and how training batches and repeats them. Every other
key, including any a later fplora renders, counts."""


def _cache_argv(argv: list[str]) -> list[str]:
    """A cache script's argv without the interpreter and the rendered dataset config's path."""
    out: list[str] = []
    skip = False
    for token in argv[1:]:
        if skip:
            skip = False
            continue
        if token == "--dataset_config":
            skip = True
            continue
        out.append(token)
    return out


def stamp_for(spec: Spec, index: int) -> dict[str, Any]:
    """What the cache content depends on, besides the records themselves: the argv both cache scripts
    get (models, one-frame flags, pass-through options, the launch) and dataset `index`'s entry of the
    dataset.toml they read, both as rendered, so that nothing the scripts are given can be left out."""
    paths = RenderedPaths(spec.render_dir)
    rendered = dataset_dict(spec, entries=[index])
    entry = {**rendered["general"], **rendered["datasets"][0]}
    return {
        "cache_latents": _cache_argv(commands.cache_latents(spec, paths, STAMP_PYTHON)),
        "cache_text_encoder": _cache_argv(commands.cache_text_encoder(spec, paths, STAMP_PYTHON)),
        "dataset": {k: v for k, v in sorted(entry.items()) if k not in NOT_CACHE_SETTINGS},
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


def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value))


def read_stamp(cache_dir: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((cache_dir / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _settings(stamp: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stamp.items() if k not in (FINGERPRINTS, RECORDS)}


def _recorded(stamp: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stamp's record fingerprints; None for a stamp without them (older fplora) or another format."""
    if not stamp or stamp.get(FINGERPRINTS) != FINGERPRINT_VERSION:
        return None
    if not isinstance(stamp.get(RECORDS), dict):
        return None
    return stamp[RECORDS]


def write_stamp(spec: Spec, index: int, prints: dict[str, dict[str, str]] | None = None) -> None:
    """Stamp the cache folder: the spec's settings and the record fingerprints the caches were made
    from (`prints`, taken before the cache scripts ran; read from the dataset now when None)."""
    if prints is None:
        prints = fingerprints(read_records(spec.dataset_entry(index).jsonl))
    stamp = {**stamp_for(spec, index), FINGERPRINTS: FINGERPRINT_VERSION, RECORDS: prints}
    write_atomic(spec.cache_directory(index) / STAMP, json.dumps(stamp, indent=1, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class CacheState:
    dataset: int
    directory: Path
    records: int
    missing_latents: int
    missing_text: int
    stamped: bool  # the folder has a readable stamp
    stamp_ok: bool  # ... naming the spec's settings
    fingerprinted: bool  # ... with record fingerprints (False: an older fplora's stamp)
    unknown: frozenset[str] = frozenset()  # stems cached, but without a fingerprint in the stamp
    stale_latents: tuple[Record, ...] = ()  # cached, but an image changed since (or unknown)
    stale_text: tuple[Record, ...] = ()  # cached, but the caption changed since (or unknown)
    orphans: tuple[str, ...] = ()  # cache files of no record: musubi-tuner trains on them all the same
    prints: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, repr=False)
    files: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)

    @property
    def changed(self) -> list[Record]:
        """Records with a stale cache file, in file order."""
        seen = {id(r): r for r in (*self.stale_latents, *self.stale_text)}
        return sorted(seen.values(), key=lambda r: r.line)

    @property
    def present(self) -> bool:
        return self.missing_latents < self.records or self.missing_text < self.records

    @property
    def up_to_date(self) -> bool:
        """Every record's files are there, made with these settings from the data as it is now."""
        return self.stamp_ok and not self.missing_latents and not self.missing_text and not self.changed

    @property
    def complete(self) -> bool:
        """Up to date, and nothing else in the folder for the trainer to pick up."""
        return self.up_to_date and not self.orphans

    def orphan_files(self) -> list[Path]:
        """Cache files of records no longer in the dataset: removed before caching, since the trainer
        globs the cache folder (`*_fp.safetensors`) rather than reading the dataset's records."""
        return [self.directory / name for name in self.orphans]

    def stale_files(self) -> list[Path]:
        """The cache files of changed records: removed before caching so that `--skip_existing`
        recomputes them (musubi-tuner keeps any file that exists)."""
        latent_stems = {r.image.stem for r in self.stale_latents if r.image is not None}
        text_names = {text_encoder_cache_file(r.image) for r in self.stale_text if r.image is not None}
        return [
            self.directory / name
            for name in sorted(self.files)
            if name in text_names or latent_cache_stem(name) in latent_stems
        ]


def _cache_stem(name: str) -> str | None:
    """The record (image stem) a latent or text-encoder cache file belongs to; None for other files."""
    latent = latent_cache_stem(name)
    return latent if latent is not None else text_encoder_cache_stem(name)


def state_of(spec: Spec, index: int, records: Records) -> CacheState:
    """Missing and stale cache files of every record: one directory listing, one stat per image."""
    cache_dir = spec.cache_directory(index)
    names = frozenset(p.name for p in cache_dir.iterdir()) if cache_dir.is_dir() else frozenset()
    latent_stems = {latent_cache_stem(n) for n in names}
    stamp = read_stamp(cache_dir)
    stamp_ok = stamp is not None and _settings(stamp) == _normalise(stamp_for(spec, index))
    recorded = _recorded(stamp)
    prints = fingerprints(records)
    missing_latents = missing_text = 0
    stale_latents: list[Record] = []
    stale_text: list[Record] = []
    unknown: set[str] = set()
    stems = {record.image.stem for record in records.items if record.image is not None}
    orphans = tuple(sorted(name for name in names if _cache_stem(name) not in (None, *stems)))
    for record in records.items:
        if record.image is None:
            continue
        stem = record.image.stem
        has_latent = stem in latent_stems
        has_text = text_encoder_cache_file(record.image) in names
        missing_latents += not has_latent
        missing_text += not has_text
        if not stamp_ok or not (has_latent or has_text):
            continue  # other settings: all is recomputed; nothing cached: nothing stale
        then = (recorded or {}).get(stem)
        if then is None and recorded is not None:
            unknown.add(stem)
        then = then or {}
        if has_latent and prints[stem]["images"] != then.get("images"):
            stale_latents.append(record)
        if has_text and prints[stem]["caption"] != then.get("caption"):
            stale_text.append(record)
    return CacheState(
        index,
        cache_dir,
        len(records.items),
        missing_latents,
        missing_text,
        stamped=stamp is not None,
        stamp_ok=stamp_ok,
        fingerprinted=recorded is not None,
        unknown=frozenset(unknown),
        stale_latents=tuple(stale_latents),
        stale_text=tuple(stale_text),
        orphans=orphans,
        prints=prints,
        files=names,
    )


def _what_changed(state: CacheState, record: Record) -> str:
    if record.image is not None and record.image.stem in state.unknown:
        return "a record the stamp has no fingerprint of"
    parts = [
        what
        for what, stale in (("caption", state.stale_text), ("images", state.stale_latents))
        if any(r is record for r in stale)
    ]
    return "its " + " and ".join(parts)


def problems(
    spec: Spec, records: Callable[[int], Records], entries: Iterable[int] | None = None
) -> list[Problem]:
    """Missing, incomplete or stale caches: training would fail, or train on what the data no longer says.

    `records` reads the records that belong in each folder: the training records (without the
    evaluation split's); `entries` (default: the datasets) may add `spec.eval_index`."""
    found = []
    for index in range(len(spec.datasets)) if entries is None else entries:
        dataset = records(index)
        state = state_of(spec, index, dataset)
        if state.complete:
            continue
        where, line = display_path(state.directory), None
        key = "eval" if index == spec.eval_index else f"datasets[{index}]"
        fix = "run `fplora cache` first, or `fplora train --cache`"
        changed = state.changed
        if not state.stamp_ok and state.present:
            made = "made with other settings" if state.stamped else "not made by `fplora cache` (no stamp)"
            what = f"cache of {state.records} records was {made}"
        elif changed and not state.fingerprinted:
            what = (
                f"cache of {state.records} records was stamped by an older fplora, without record"
                f" fingerprints: {len(changed)} cached records cannot be checked against the dataset"
            )
            fix = "run `fplora cache`: it recomputes them (or `fplora train --cache`)"
        elif changed:
            where, line = display_path(dataset.jsonl), changed[0].line
            what = (
                f"{len(changed)} of {state.records} records changed since their caches were made"
                f" (the first: this line, {_what_changed(state, changed[0])});"
                f" the cache in {display_path(state.directory)} is stale"
            )
            fix = FIX
        elif state.missing_latents or state.missing_text:
            what = (
                f"cache of {state.records} records misses {state.missing_latents} latent"
                f" and {state.missing_text} text-encoder files"
            )
        else:
            what = (
                f"{len(state.orphans)} cache files belong to no record of the dataset (e.g."
                f" {state.orphans[0]}; records removed since caching?) and musubi-tuner would train on"
                " them too"
            )
            fix = "run `fplora cache`: it deletes them"

        found.append(Problem(where, line, key, what, fix))
    return found
