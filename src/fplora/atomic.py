"""Writing a file so that a reader never sees half of it.

Manifests, cache stamps, inference folder records and rendered files are read by the next fplora
command (or by musubi-tuner) and may be written while a Ctrl-C or a full disk stops fplora: each is
written to a temporary file beside it, then renamed over it in one step.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) in one rename; its folder is created when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, parts: list[bytes]) -> None:
    """Replace `path` with `parts` written one after the other, in one rename (large binary files,
    such as an exported LoRA, written without first joining them in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            for part in parts:
                handle.write(part)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
