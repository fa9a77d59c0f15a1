"""The five model files: present, readable, whole safetensors files, every shard of a split file there.

A missing or truncated model otherwise shows up minutes into a GPU job, after caching has started.
musubi-tuner loads a file named `<name>-0000k-of-0000n.<ext>` by opening all n shards from the same
folder, so naming one shard implies the others; each missing one is reported by name.

A `.safetensors` file is checked from its header alone (`safetensors_problem`): an 8-byte
little-endian header length, a JSON header, and tensor data ending exactly at the end of the file,
which is what the safetensors library requires before loading anything. That catches an HTML error
page or a Git LFS pointer saved under the model's name, and a truncated download, in microseconds;
no tensor is read.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

from fplora.problems import Problem, display_path
from fplora.spec.models import Spec

MODEL_KEYS = ("dit", "vae", "text_encoder1", "text_encoder2", "image_encoder")

_SHARD = re.compile(r"^(?P<prefix>.*-)(?P<index>\d+)-of-(?P<count>\d+)(?P<suffix>\.[^.]+)$")

_WHERE_FIX = "check the path; relative names resolve against models.dir, else the spec's folder"


def shard_names(name: str) -> list[str]:
    """Every shard's file name when `name` is one shard of a split file, else `[]`.

    Mirrors musubi-tuner's `load_split_weights`, which rebuilds every shard's name with five-digit
    numbers (`{prefix}{k:05d}-of-{count:05d}`) whatever shard the user named.
    """
    match = _SHARD.match(name)
    if match is None:
        return []
    count = int(match["count"])
    return [f"{match['prefix']}{k:05d}-of-{count:05d}{match['suffix']}" for k in range(1, count + 1)]


MAX_HEADER = 100_000_000
"""The safetensors library's limit on the JSON header (`MAX_HEADER_SIZE`); a larger length is garbage."""

_DOWNLOAD_FIX = "download it again"


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _sizes(expected: int, actual: int) -> tuple[str, str]:
    """Both sizes in the same words, exact bytes where rounding would make them look equal."""
    shown = _size(expected), _size(actual)
    return shown if shown[0] != shown[1] else (f"{expected:,} bytes", f"{actual:,} bytes")


def _not_safetensors(head: bytes) -> tuple[str, str]:
    """(message, fix) for a file whose first bytes are not a safetensors header length."""
    if head.startswith(b"version https://git-lfs"):
        return (
            "is a Git LFS pointer, not the weights",
            "download the file itself (git lfs pull, or hf download)",
        )
    text = head.lstrip()
    if text[:1] == b"<":
        word = text.split(None, 1)[0][:16].decode("ascii", "replace")
        return f"is not a safetensors file (starts with '{word}': a web page, not the model)", _DOWNLOAD_FIX
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return (
            "is not a safetensors file (a PyTorch checkpoint?)",
            "use the .safetensors version of the model",
        )
    start = head[:16]
    if start.strip() and all(32 <= byte < 127 or byte in b"\t\r\n" for byte in start):
        return f"is not a safetensors file (starts with '{start.split()[0].decode()}')", _DOWNLOAD_FIX
    return f"is not a safetensors file (starts with bytes {head[:8].hex(' ')})", _DOWNLOAD_FIX


def safetensors_problem(path: Path, size: int) -> tuple[str, str] | None:
    """(message, fix) when `path` (of `size` bytes) is not a whole safetensors file; header only.

    The checks the safetensors library makes before loading (`SafeTensors::read_metadata`): a header
    length within the file, a JSON object as header, and the last tensor's data ending exactly at the
    end of the file. Messages are predicates that read after the file's name ("is truncated: ...").
    """
    with path.open("rb") as handle:
        head = handle.read(64)
        if len(head) < 8:
            return _not_safetensors(head)
        (length,) = struct.unpack("<Q", head[:8])
        if length > MAX_HEADER or length < 2 or head[8:9] != b"{":
            return _not_safetensors(head)
        if 8 + length > size:
            return (
                f"is truncated: {_size(size)}, shorter than its own header ({_size(8 + length)})",
                _DOWNLOAD_FIX,
            )
        handle.seek(8)
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except ValueError:  # bad JSON or bad UTF-8
        header = None
    if not isinstance(header, dict):
        return "is damaged: its header is not a JSON object", _DOWNLOAD_FIX
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets)
        ):
            return f"is damaged: tensor '{name}' has no valid data_offsets in the header", _DOWNLOAD_FIX
        end = max(end, offsets[1])
    expected = 8 + length + end
    if size < expected:
        says, has = _sizes(expected, size)
        return f"is truncated: the header says {says}, the file has {has}", _DOWNLOAD_FIX
    if size > expected:
        return (
            f"is {size - expected:,} bytes longer than its header says ({_size(expected)}):"
            " the safetensors library refuses it",
            _DOWNLOAD_FIX,
        )
    return None


def _file_problem(path: Path) -> tuple[str, str] | None:
    """(message, fix) when `path` is not a non-empty readable file, or not a whole safetensors file."""
    shown = display_path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        if not path.parent.is_dir():
            return f"{shown} not found (folder {display_path(path.parent)} does not exist)", _WHERE_FIX
        return f"{shown} not found", _WHERE_FIX
    except OSError as exc:
        return f"{shown} cannot be read: {exc.strerror or exc}", "fix the path or its permissions"
    if path.is_dir():
        return f"{shown} is a folder, not a model file", "name the model file itself"
    if info.st_size == 0:
        return f"{shown} is empty (0 bytes)", "download it again"
    if not os.access(path, os.R_OK):
        return f"{shown} cannot be read: permission denied", "fix the file's permissions"
    if path.name.lower().endswith(".safetensors"):  # musubi-tuner torch.loads other VAE files
        try:
            found = safetensors_problem(path, info.st_size)
        except OSError as exc:
            return f"{shown} cannot be read: {exc.strerror or exc}", "fix the path or its permissions"
        if found is not None:
            return f"{shown} {found[0]}", found[1]
    return None


def check_models(spec: Spec) -> Iterator[Problem]:
    """One problem per missing, empty or unreadable model file or shard."""
    for key in MODEL_KEYS:
        path: Path = getattr(spec.models, key)
        found = _file_problem(path)
        if found is not None:
            yield spec.problem(("models", key), *found)
        if found is not None and not path.parent.is_dir():
            continue  # the folder is missing: one problem says it all
        for name in shard_names(path.name):
            shard = path.parent / name
            if shard == path:
                continue
            shard_found = _file_problem(shard)
            if shard_found is None:
                continue
            message, fix = shard_found
            if message.endswith(" not found"):
                count = len(shard_names(path.name))
                message = f"missing shard {display_path(shard)}"
                fix = f"all {count} shards must be in the same folder"
            yield spec.problem(("models", key), message, fix)
