"""Content hashes of dataset images and model files, computed once and remembered.

The cache store's keys (`datasets.cache_keys`) name a latent by what its images hold, not by
their names, so two versions of a dataset that point at the same pictures share their caches.
Hashing 30,000 images on every `fplora cache` would cost minutes; a hash is therefore remembered
with the file's (size, mtime_ns, inode, ctime_ns) and recomputed only when one of them changes.
`cp -p` onto an existing file keeps its size, mtime and inode, but not its ctime, which no user
tool can set back: such a replacement is hashed again.

Model files (tens of gigabytes) are identified by a sample instead: their size and the blake2b of
their first and last MiB, which holds the safetensors header with every tensor's name, shape and
offset, and some weights. That tells two downloads or fine-tunes apart without reading 16 GB.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from fplora.atomic import write_atomic

CHUNK = 1 << 20
MEMO_VERSION = 1
DIGEST_BYTES = 16


def _file_digest(path: str) -> str:
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sample_digest(path: str, size: int) -> str:
    digest = hashlib.blake2b(str(size).encode(), digest_size=DIGEST_BYTES)
    with open(path, "rb") as handle:
        digest.update(handle.read(CHUNK))
        if size > 2 * CHUNK:
            handle.seek(size - CHUNK)
            digest.update(handle.read(CHUNK))
    return "sample-" + digest.hexdigest()


class ContentHashes:
    """A memo file of content hashes by absolute path; `save` writes it back when something changed."""

    def __init__(self, memo: Path):
        self.memo = memo
        self._known: dict[str, list[object]] = {}
        self._dirty = False
        try:
            data = json.loads(memo.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if (
            isinstance(data, dict)
            and data.get("version") == MEMO_VERSION
            and isinstance(data.get("files"), dict)
        ):
            self._known = data["files"]

    def _lookup(self, path: Path, sample: bool) -> str | None:
        """The digest of `path`, or None when it cannot be read (missing, a folder, no permission)."""
        name = os.fspath(path)
        if not os.path.isabs(name):
            name = os.path.abspath(name)
        try:
            info = os.stat(name)
        except OSError:
            return None
        known = self._known.get(name)
        if (
            known is not None
            and known[0] == info.st_size
            and known[1] == info.st_mtime_ns
            and known[2] == info.st_ino
            and known[3] == info.st_ctime_ns
            and known[4] == sample
        ):
            return str(known[5])
        stamp = [info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns, sample]
        try:
            digest = _sample_digest(name, info.st_size) if sample else _file_digest(name)
        except OSError:
            return None
        self._known[name] = [*stamp, digest]
        self._dirty = True
        return digest

    def digest(self, path: Path) -> str | None:
        """blake2b of the whole file (images)."""
        return self._lookup(path, sample=False)

    def identity(self, path: Path) -> str | None:
        """A sampled digest (model files; see the module's docstring)."""
        return self._lookup(path, sample=True)

    def save(self) -> None:
        """Write the memo when a hash was added; a failure to write only costs hashing again."""
        if not self._dirty:
            return
        try:
            write_atomic(self.memo, json.dumps({"version": MEMO_VERSION, "files": self._known}) + "\n")
        except OSError:
            return
        self._dirty = False
