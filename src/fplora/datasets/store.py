"""One cache store per project, shared by every version; each version's cache folder is a view of it.

Why: musubi-tuner caches per folder, by image stem, and its trainer reads a folder (it globs
`*_fp.safetensors`). A `v3b.yaml` that extends `v3.yaml` with the same data got a folder of its own and
paid caching again (two minutes of loading encoders on an H100, hours at 10,000 records).

Layout (`<project>/.fplora/cache-store/`):

    latents/<settings>/<content>_<W>x<H>.safetensors   one-frame latents
    text/<settings>/<content>.safetensors              text-encoder outputs
    hashes.json                                        remembered content hashes (`datasets.hashes`)
    staging/<run>/                                     where musubi-tuner writes before adoption

`<settings>` and `<content>` are digests of what an entry is computed from (`datasets.cache_keys`
says which). The bucket musubi-tuner chose is kept in the latent's name because the trainer reads
it from the name.

A view folder holds one relative symbolic link per record and kind, under musubi-tuner's own names
(`{stem}_{W:04d}x{H:04d}_fp.safetensors`, `{stem}_fp_te.safetensors`), pointing into the store. A
link's target says which settings and content it was made for: a link to another target is stale,
a record's files that are not linked are to link, a record whose entry is not in the store is to
compute. A record removed from the dataset loses its link; its store entry stays until
`fplora cache prune`.

musubi-tuner never writes into the store or a view (`jobs.cache` says how it is run).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fplora.atomic import write_atomic
from fplora.datasets.cache_keys import Settings, latent_content, text_content
from fplora.datasets.hashes import ContentHashes
from fplora.datasets.records import Record, Records
from fplora.musubi.names import (
    LATENT_CACHE_SUFFIX,
    TEXT_ENCODER_CACHE_SUFFIX,
    latent_cache_stem,
    text_encoder_cache_stem,
)
from fplora.process import alive
from fplora.safetensors import safetensors_problem
from fplora.spec.models import Spec
from fplora.state import STATE_DIR, project_state

STORE_NAME = "cache-store"
STORE = Path(STATE_DIR) / STORE_NAME
LATENTS, TEXT, STAGING, MEMO, SEALS = "latents", "text", "staging", "hashes.json", "views"
SUFFIX = ".safetensors"
OLD_STAMP = "fplora-cache.json"  # what fplora wrote into cache folders before the store


def store_dir(spec: Spec) -> Path:
    """`<project>/.fplora/cache-store`, beside fplora's other project state (`state.project_state`)."""
    return project_state(spec.path) / STORE_NAME


def _cache_stem(name: str) -> str | None:
    """The record (image stem) a view file belongs to; None for other files. The suffix is tested
    first: this runs for every file of every view."""
    if name.endswith(TEXT_ENCODER_CACHE_SUFFIX):
        return text_encoder_cache_stem(name)
    if name.endswith(LATENT_CACHE_SUFFIX):
        return latent_cache_stem(name)
    return None


class Store:
    """The store's folders, each listed at most once per command."""

    def __init__(self, root: Path):
        self.root = root
        self._listed: dict[Path, dict[str, str]] = {}

    def hashes(self) -> ContentHashes:
        return ContentHashes(self.root / MEMO)

    def _list(self, folder: Path) -> dict[str, str]:
        """content → file name, for the entries of one settings folder."""
        if folder not in self._listed:
            found: dict[str, str] = {}
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.name.endswith(SUFFIX):
                            found[entry.name[: -len(SUFFIX)].split("_", 1)[0]] = entry.name
            except OSError:
                pass
            self._listed[folder] = found
        return self._listed[folder]

    def listing(self, kind: str, settings: str) -> dict[str, str]:
        """content → file name in `kind/settings` (listed once)."""
        return self._list(self.root / kind / settings)

    def adopt(self, staged: Path, kind: str, settings: str, content: str) -> Path:
        """Move a file musubi-tuner wrote into the store in one rename (a reader never sees half of
        it); the latent keeps its bucket (`_<W>x<H>`) from musubi-tuner's name. An older entry of the
        same key (`--rebuild`) is replaced."""
        folder = self.root / kind / settings
        folder.mkdir(parents=True, exist_ok=True)
        bucket = ""
        if kind == LATENTS:
            bucket = "_" + staged.name[: -len(LATENT_CACHE_SUFFIX)].rsplit("_", 1)[1]
        target = folder / f"{content}{bucket}{SUFFIX}"
        listing = self._list(folder)
        old = listing.get(content)
        os.replace(staged, target)
        if old is not None and old != target.name:
            (folder / old).unlink(missing_ok=True)
        listing[content] = target.name
        return target

    def entries(self) -> Iterator[Path]:
        """Every cache file in the store."""
        for kind in (LATENTS, TEXT):
            base = self.root / kind
            if base.is_dir():
                for folder in sorted(base.iterdir()):
                    if folder.is_dir():
                        yield from sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX))

    def staging(self, name: str) -> Path:
        """A fresh staging folder `staging/<name>` (an earlier one of that name is removed)."""
        folder = self.root / STAGING / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def seal_path(self, directory: Path) -> Path:
        """Where the store remembers a view folder as `link` left it (`view_of` reads it)."""
        digest = hashlib.blake2b(os.fspath(directory).encode("utf-8", "surrogatepass"), digest_size=12)
        return self.root / SEALS / f"{digest.hexdigest()}.json"

    def busy(self) -> bool:
        """A live `fplora cache` is staging into this store (its entries are not linked yet)."""
        base = self.root / STAGING
        if not base.is_dir():
            return False
        for folder in base.iterdir():
            pid = folder.name.split("-", 1)[0]
            if pid.isdigit() and alive(int(pid)):
                return True
        return False

    def drop_empty_folders(self) -> None:
        for kind in (LATENTS, TEXT):
            base = self.root / kind
            if base.is_dir():
                for folder in base.iterdir():
                    if folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()

    def clear_staging(self, keep: set[str]) -> None:
        """Remove staging folders of runs that ended (`<pid>-...` of a process that is gone)."""
        base = self.root / STAGING
        if not base.is_dir():
            return
        for folder in base.iterdir():
            pid = folder.name.split("-", 1)[0]
            if folder.name in keep or (pid.isdigit() and alive(int(pid))):
                continue
            shutil.rmtree(folder, ignore_errors=True)


def staged_problem(path: Path) -> str | None:
    """Why a staged file is not a whole cache file (empty, cut short), or None."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return str(exc.strerror or exc)
    found = safetensors_problem(path, size)
    return None if found is None else found[0]


@dataclass
class View:
    """One dataset entry's cache folder against the store: what is linked, stale, to link, to compute."""

    index: int
    directory: Path
    records: int
    latent_settings: str
    text_settings: str
    want: dict[str, str] = field(default_factory=dict)  # view name → link target (relative)
    compute_latents: list[tuple[str, Record]] = field(default_factory=list)  # (content, record)
    compute_text: list[tuple[str, Record]] = field(default_factory=list)
    unreadable: list[Record] = field(default_factory=list)  # an image cannot be read: no key
    have: dict[str, str | None] = field(default_factory=dict)  # cache-named files there → target
    stale_latents: list[Record] = field(default_factory=list)  # an outdated file is in the view
    stale_text: list[Record] = field(default_factory=list)
    other_settings: bool = False  # ... made under settings other than the spec's
    orphans: list[str] = field(default_factory=list)  # cache files of no record
    linked: int = 0  # wanted links already in place
    sealed: bool = False  # `have` came from the store's seal of the folder, not a listing

    @property
    def to_link(self) -> int:
        return len(self.want) - self.linked

    @property
    def missing(self) -> int:
        """Records with an entry to compute (either kind)."""
        return len(
            {id(r) for _, r in (*self.compute_latents, *self.compute_text)} | {id(r) for r in self.unreadable}
        )

    @property
    def stale(self) -> list[Record]:
        seen = {id(r): r for r in (*self.stale_latents, *self.stale_text)}
        return sorted(seen.values(), key=lambda r: r.line)

    @property
    def complete(self) -> bool:
        """Every record's two files linked from the store, nothing else for the trainer to glob."""
        return (
            not self.compute_latents
            and not self.compute_text
            and not self.unreadable
            and self.linked == len(self.want)
            and not self.orphans
            and not self.stale_latents
            and not self.stale_text
        )


def _listing(directory: Path) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if _cache_stem(entry.name) is None:
                    continue
                found[entry.name] = os.readlink(entry.path) if entry.is_symlink() else None
    except OSError:
        pass
    return found


def _sealed(store: Store, directory: Path) -> dict[str, str | None] | None:
    """The view folder's cache files and their link targets from the seal written when it was last
    found complete, if the folder has not changed since (adding, removing or replacing a link
    changes its mtime); None to read the folder (one readlink per file: a third of a no-op)."""
    try:
        mtime = os.stat(directory).st_mtime_ns
        seal = json.loads(store.seal_path(directory).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(seal, dict) and seal.get("mtime_ns") == mtime and isinstance(seal.get("links"), dict):
        return dict(seal["links"])
    return None


def seal(store: Store, view: View) -> None:
    """Remember a complete view folder as it is now, so that the next command need not list it."""
    if view.complete and not view.sealed:
        _seal(store, view.directory, view.want)
        view.sealed = True


def _seal(store: Store, directory: Path, links: dict[str, str]) -> None:
    try:
        mtime = os.stat(directory).st_mtime_ns
        path = store.seal_path(directory)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"directory": os.fspath(directory), "mtime_ns": mtime, "links": links}))
    except OSError:
        return  # without a seal the next command reads the folder


def view_of(
    spec: Spec, index: int, records: Records, store: Store, settings: Settings, hashes: ContentHashes
) -> View:
    """Compare dataset entry `index`'s cache folder with what its records need: one listing of the
    folder, one stat per image (hashes are remembered), one listing per store folder."""
    directory = Path(os.path.abspath(spec.cache_directory(index)))
    view = View(index, directory, len(records.items), settings.latents[index], settings.text)
    base = os.fspath(directory)
    latents = store.listing(LATENTS, view.latent_settings)
    texts = store.listing(TEXT, view.text_settings)
    # one relative path per store folder, not one per link (relpath is slow at 20,000 calls)
    latent_dir = os.path.relpath(store.root / LATENTS / view.latent_settings, base) + os.sep
    text_dir = os.path.relpath(store.root / TEXT / view.text_settings, base) + os.sep
    by_stem: dict[str, Record] = {}
    for record in records.items:
        if record.image is None:
            continue
        stem = record.image.stem
        by_stem[stem] = record
        latent = latent_content(record, hashes)
        if latent is None:
            view.unreadable.append(record)
        elif (name := latents.get(latent)) is not None:
            bucket = name[len(latent) + 1 : -len(SUFFIX)]
            view.want[f"{stem}_{bucket}{LATENT_CACHE_SUFFIX}"] = latent_dir + name
        else:
            view.compute_latents.append((latent, record))
        text = text_content(record)
        if (name := texts.get(text)) is not None:
            view.want[f"{stem}{TEXT_ENCODER_CACHE_SUFFIX}"] = text_dir + name
        else:
            view.compute_text.append((text, record))
    sealed = _sealed(store, directory)
    view.sealed = sealed is not None
    view.have = sealed if sealed is not None else _listing(directory)
    for name, target in view.have.items():
        owner = _cache_stem(name)
        if owner is None or owner not in by_stem:
            view.orphans.append(name)
            continue
        if target is not None and view.want.get(name) == target:
            view.linked += 1
            continue
        is_latent = name.endswith(LATENT_CACHE_SUFFIX) and not name.endswith(TEXT_ENCODER_CACHE_SUFFIX)
        (view.stale_latents if is_latent else view.stale_text).append(by_stem[owner])
        made = view.latent_settings if is_latent else view.text_settings
        if target is None or os.path.basename(os.path.dirname(target)) != made:
            view.other_settings = True
    view.orphans.sort()
    return view


def link(view: View, store: Store) -> None:
    """Make the view folder hold exactly the wanted links: outdated files and files of removed
    records go, each missing link is made in one step (a link beside it, renamed over)."""
    view.directory.mkdir(parents=True, exist_ok=True)
    for name, target in view.have.items():
        if view.want.get(name) != target:
            (view.directory / name).unlink(missing_ok=True)
    pid = os.getpid()
    for name, target in view.want.items():
        if view.have.get(name) == target:
            continue
        path = view.directory / name
        tmp = view.directory / f".{name}.{pid}.link"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, path)
    (view.directory / OLD_STAMP).unlink(missing_ok=True)
    _seal(store, view.directory, view.want)
    view.sealed = True
    view.have = dict(view.want)
    view.linked = len(view.want)
    view.orphans, view.stale_latents, view.stale_text = [], [], []


def size_of(store: Store) -> tuple[int, int]:
    """(files, bytes) of the store's cache entries."""
    files = total = 0
    for path in store.entries():
        try:
            total += path.stat().st_size
        except OSError:
            continue
        files += 1
    return files, total
