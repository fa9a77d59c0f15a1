"""Reading a `.safetensors` file's header, the part of the format fplora needs without torch.

A file is judged from its header alone: an 8-byte little-endian header length, a JSON header, and
tensor data ending exactly at the end of the file, which is what the safetensors library requires
before loading anything. That catches an HTML error page or a Git LFS pointer saved under a model's
name, and a truncated download, in microseconds; no tensor is read. `check/` uses it for the model
files, the infer job for LoRA files.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from fplora.problems import byte_size

MAX_HEADER = 100_000_000
"""The safetensors library's limit on the JSON header (`MAX_HEADER_SIZE`); a larger length is garbage."""

_DOWNLOAD_FIX = "download it again"


def _sizes(expected: int, actual: int) -> tuple[str, str]:
    """Both sizes in the same words, exact bytes where rounding would make them look equal."""
    shown = byte_size(expected), byte_size(actual)
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
                f"is truncated: {byte_size(size)}, shorter than its own header ({byte_size(8 + length)})",
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
            f"is {size - expected:,} bytes longer than its header says ({byte_size(expected)}):"
            " the safetensors library refuses it",
            _DOWNLOAD_FIX,
        )
    return None


_SCALAR_FORMATS = {"F32": "<f", "F64": "<d", "F16": "<e"}


def _scalar(raw: bytes, dtype: str) -> float | None:
    """One stored number: float types only (bf16 is the top half of an f32)."""
    if dtype == "BF16" and len(raw) == 2:
        value: float = struct.unpack("<f", b"\0\0" + raw)[0]
        return value
    fmt = _SCALAR_FORMATS.get(dtype)
    if fmt is None or len(raw) != struct.calcsize(fmt):
        return None
    value = struct.unpack(fmt, raw)[0]
    return value


def lora_rank_alpha(path: Path) -> tuple[set[int], set[float]] | None:
    """The ranks (`*.lora_down.weight` rows) and alphas (`*.alpha` values) of a LoRA file written by
    musubi-tuner's `networks/lora*.py`, reading the header and the alpha scalars only; None when the
    file is not such a LoRA (another network type, unreadable, not safetensors)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER:
                return None
            header = json.loads(handle.read(length))
            ranks: set[int] = set()
            alphas: set[float] = set()
            for name, info in header.items():
                if not isinstance(info, dict):
                    continue
                if name.endswith(".lora_down.weight") and info.get("shape"):
                    ranks.add(int(info["shape"][0]))
                elif name.endswith(".alpha"):
                    start, end = info["data_offsets"]
                    handle.seek(8 + length + start)
                    value = _scalar(handle.read(end - start), str(info.get("dtype")))
                    if value is not None:
                        alphas.add(value)
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
    return (ranks, alphas) if ranks else None
