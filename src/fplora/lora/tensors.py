"""A LoRA file's tensors and metadata, read and written with numpy instead of torch.

fplora never imports torch (it runs where musubi-tuner's Python is not), and the `safetensors`
package's numpy API refuses bf16, the dtype musubi-tuner saves FramePack LoRAs in. The format is
small enough to do by hand: an 8-byte little-endian header length, a JSON header (name → dtype,
shape, data offsets; `__metadata__` → str to str), then the tensors' bytes back to back.

bf16 has no numpy dtype, so a bf16 tensor is held as its raw `uint16` bit patterns; `to_float32`
widens it exactly (a bf16 value is the top half of the float32 with the same value) and
`from_float32` rounds to nearest, ties to even, as torch's `.to(torch.bfloat16)` does.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fplora.atomic import write_bytes_atomic
from fplora.problems import Problem, UserError, display_path
from fplora.safetensors import safetensors_problem

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

STORAGE = {"BF16": "<u2", "F16": "<f2", "F32": "<f4", "F64": "<f8"}
"""safetensors dtype → the numpy dtype its bytes are held in (bf16: raw bit patterns)."""

FLOAT32 = "F32"
DTYPES = {"bf16": "BF16", "fp16": "F16", "float32": FLOAT32}
"""`--dtype` words → safetensors dtypes."""
_ALIGN = 8  # the safetensors library pads its header to 8 bytes; readers accept any padding


@dataclass
class Tensor:
    """One tensor as stored: its safetensors dtype and its values (bf16 as uint16 bit patterns)."""

    dtype: str
    array: NDArray[np.generic]

    def to_float64(self) -> NDArray[np.float64]:
        """The stored values, exactly, as float64 (every bf16/f16/f32 value is a float64 value)."""
        return to_float32(self.array).astype("<f8") if self.dtype == "BF16" else self.array.astype("<f8")


def to_float32(bits: NDArray[np.generic]) -> NDArray[np.float32]:
    """bf16 bit patterns → float32, exactly."""
    import numpy as np

    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def from_float32(values: NDArray[np.float32]) -> NDArray[np.uint16]:
    """float32 → bf16 bit patterns, rounded to nearest, ties to even; a NaN stays a NaN."""
    import numpy as np

    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        out[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return out


def store(values: NDArray[np.float64], dtype: str) -> NDArray[np.generic]:
    """float64 values rounded once to `dtype`'s storage (bf16: to float32, then to bf16)."""
    if dtype == "BF16":
        return from_float32(values.astype("<f4"))
    return values.astype(STORAGE[dtype])


def read(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Every tensor of a safetensors file, and its metadata. A damaged file, or a dtype a LoRA does
    not use, is a UserError naming the file."""
    import numpy as np

    where = display_path(path)
    found = safetensors_problem(path, path.stat().st_size)
    if found is not None:
        raise UserError(Problem(where, None, "", *found))
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    metadata = header.pop("__metadata__", None) or {}
    start = 8 + length
    tensors = {}
    for name, info in header.items():
        dtype = info["dtype"]
        if dtype not in STORAGE:
            raise UserError(
                Problem(
                    where,
                    None,
                    name,
                    f"has dtype {dtype}, not a LoRA's",
                    "export a LoRA saved by musubi-tuner",
                )
            )
        begin, end = info["data_offsets"]
        array = np.frombuffer(
            raw,
            dtype=STORAGE[dtype],
            count=(end - begin) // np.dtype(STORAGE[dtype]).itemsize,
            offset=start + begin,
        )
        tensors[name] = Tensor(dtype, array.reshape(info["shape"]))
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def data(tensors: dict[str, Tensor]) -> tuple[dict[str, object], list[bytes]]:
    """(header entries, tensor data chunks in the same order): names sorted, data back to back."""
    entries: dict[str, object] = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name]
        chunk = tensor.array.astype(STORAGE[tensor.dtype], copy=False).tobytes()
        entries[name] = {
            "dtype": tensor.dtype,
            "shape": list(tensor.array.shape),
            "data_offsets": [offset, offset + len(chunk)],
        }
        chunks.append(chunk)
        offset += len(chunk)
    return entries, chunks


def header(entries: dict[str, object], metadata: dict[str, str]) -> bytes:
    """The header with its length prefix, padded with spaces to 8 bytes as the safetensors library
    writes it; metadata first."""
    whole: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    whole.update(entries)
    text = json.dumps(whole, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % _ALIGN)
    return struct.pack("<Q", len(text)) + text


def write(path: Path, entries: dict[str, object], chunks: list[bytes], metadata: dict[str, str]) -> None:
    """Write a safetensors file (from `data`) whole or not at all: temp file beside it, one rename."""
    write_bytes_atomic(path, [header(entries, metadata), *chunks])


def with_metadata(path: Path, out: Path, metadata: dict[str, str]) -> None:
    """Copy a safetensors file with its metadata replaced and its tensor bytes untouched, so the
    weights stay bit for bit the same and musubi-tuner's `sshs_model_hash` (sha256 of the bytes
    after the header) still holds."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    entries = json.loads(raw[8 : 8 + length])
    entries.pop("__metadata__", None)
    write_bytes_atomic(out, [header(entries, metadata), raw[8 + length :]])
