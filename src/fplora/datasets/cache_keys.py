"""The keys of the cache store: what a latent or text-encoder output is computed from, as digests.

Why a module of its own: the store (`datasets.store`) holds files and links and compares a view
folder with what its records need; what makes two caches the same is a separate question, asked
also by `datasets.caches` (the stamp evaluation compares) and `jobs.cache` (`--rebuild` keys every
record again), and answered here once. A change to what counts as a setting is made here and
nowhere else.

A store entry lives at `<kind>/<settings>/<content>...`. `<settings>` is a digest of what the cache
script is given besides the records: its argv as rendered (model files by a sampled content digest
rather than their path, so moving the models does not recompute; the interpreter, the dataset
config's path and the CPU thread count left out) and, for latents, the dataset's entry in
dataset.toml (resolution and bucketing, which decide the bucket, and the `fp_1f_*` keys).
`<content>` is, for a latent, the digest of the target and control images' bytes in order; for a
text-encoder output, of the caption.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fplora.datasets.hashes import ContentHashes
from fplora.datasets.records import Record
from fplora.render import commands
from fplora.render.files import RenderedPaths, dataset_dict
from fplora.spec.models import Spec

STAMP_PYTHON = "python"  # the interpreter's path is no setting of the caches
NOT_CACHE_SETTINGS = frozenset({"image_jsonl_file", "cache_directory", "batch_size", "num_repeats"})
"""dataset.toml keys that do not change what a cache file holds: where records and caches live
(the records are keyed one by one) and how training batches and repeats them. Every other key,
including any a later fplora renders, counts."""
NOT_CACHE_FLAGS = {"--dataset_config": 1, "--num_cpu_threads_per_process": 1}
"""Flags (and how many values follow) of the cache argv that change where or how fast, not what."""


def cache_argv(argv: list[str]) -> list[str]:
    """A cache script's argv without the interpreter and the flags of `NOT_CACHE_FLAGS`."""
    out: list[str] = []
    skip = 0
    for token in argv[1:]:
        if skip:
            skip -= 1
        elif token in NOT_CACHE_FLAGS:
            skip = NOT_CACHE_FLAGS[token]
        else:
            out.append(token)
    return out


def dataset_settings(spec: Spec, index: int) -> dict[str, Any]:
    """Dataset `index`'s entry of dataset.toml as rendered, `[general]` folded in, without
    `NOT_CACHE_SETTINGS`."""
    rendered = dataset_dict(spec, entries=[index])
    entry = {**rendered["general"], **rendered["datasets"][0]}
    return {k: v for k, v in sorted(entry.items()) if k not in NOT_CACHE_SETTINGS}


def _digest(value: Any) -> str:
    """A short digest of a JSON value, keys sorted: the same settings give the same folder name."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _identified(argv: list[str], hashes: ContentHashes) -> list[str]:
    """Tokens that name a file (the models, a pass-through file) become the file's identity."""
    out = []
    for token in argv:
        identity = hashes.identity(Path(token)) if os.path.isabs(token) and os.path.isfile(token) else None
        out.append(f"file:{identity}" if identity else token)
    return out


@dataclass(frozen=True)
class Settings:
    """Settings digests: one for text-encoder outputs, one per dataset entry for latents."""

    text: str
    latents: dict[int, str]


def settings_of(spec: Spec, hashes: ContentHashes) -> Settings:
    """The spec's settings digests, from the cache argv as rendered (with a placeholder interpreter,
    so that the Python fplora runs under does not count) and each entry's dataset.toml settings."""
    paths = RenderedPaths(spec.render_dir)
    latent_argv = _identified(cache_argv(commands.cache_latents(spec, paths, STAMP_PYTHON)), hashes)
    text_argv = _identified(cache_argv(commands.cache_text_encoder(spec, paths, STAMP_PYTHON)), hashes)
    return Settings(
        text=_digest({"argv": text_argv}),
        latents={
            index: _digest({"argv": latent_argv, "dataset": dataset_settings(spec, index)})
            for index in spec.cache_entries
        },
    )


def latent_content(record: Record, hashes: ContentHashes) -> str | None:
    """The target and control images' bytes, in order; None when one cannot be read."""
    if record.image is None:
        return None
    digests = []
    for path in (record.image, *record.controls):
        digest = hashes.digest(path)
        if digest is None:
            return None
        digests.append(digest)
    return hashlib.blake2b("\0".join(digests).encode(), digest_size=16).hexdigest()


def text_content(record: Record) -> str:
    """The caption's digest; a record without a caption has a key of its own, never an empty one's."""
    caption = "\0none" if record.caption is None else "caption\0" + record.caption
    return hashlib.blake2b(caption.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
