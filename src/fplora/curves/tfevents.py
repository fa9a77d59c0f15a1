"""Scalars from TensorBoard event files, with the standard library alone.

musubi-tuner logs `loss/current` (the raw loss of each step) through accelerate's TensorBoard
tracker; fplora's own record of the loss, parsed from the progress bar, holds only musubi-tuner's
moving average. Reading the raw loss must not make fplora depend on tensorboard or protobuf (a
large install for one plot), and the part of the format needed is small and stable:

- an event file is a sequence of TFRecords: `uint64 length`, `uint32 masked CRC of the length`,
  `length` bytes of data, `uint32 masked CRC of the data` (little-endian; CRCs are not checked: a
  file still being written ends in a partial record, which is dropped);
- each record is an `Event` protobuf: `wall_time` (field 1, double), `step` (2, int64), `summary`
  (5, message) holding repeated `value` (1) messages: `tag` (1, string) and either `simple_value`
  (2, float), as `add_scalar` writes it, or `tensor` (8, a TensorProto with a float in `float_val`
  (5) or `tensor_content` (4)), as newer writers do.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

EVENT_GLOB = "events.out.tfevents.*"


@dataclass(frozen=True)
class Scalar:
    tag: str
    step: int
    value: float
    wall_time: float


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: object
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _tensor_value(data: bytes) -> float | None:
    for number, wire, value in _fields(data):
        if number == 5 and wire == 5 and isinstance(value, bytes):  # float_val, not packed
            return float(struct.unpack("<f", value)[0])
        if number == 5 and wire == 2 and isinstance(value, bytes) and len(value) >= 4:  # packed float_val
            return float(struct.unpack("<f", value[:4])[0])
        if number == 4 and isinstance(value, bytes) and len(value) >= 4:  # tensor_content
            return float(struct.unpack("<f", value[:4])[0])
    return None


def _values(summary: bytes) -> Iterator[tuple[str, float]]:
    for number, _, value in _fields(summary):
        if number != 1 or not isinstance(value, bytes):
            continue
        tag, scalar = "", None
        for field, wire, item in _fields(value):
            if field == 1 and isinstance(item, bytes):
                tag = item.decode("utf-8", "replace")
            elif field == 2 and wire == 5 and isinstance(item, bytes):
                scalar = float(struct.unpack("<f", item)[0])
            elif field == 8 and isinstance(item, bytes):
                scalar = _tensor_value(item)
        if tag and scalar is not None:
            yield tag, scalar


def _records(blob: bytes) -> Iterator[bytes]:
    pos = 0
    while pos + 12 <= len(blob):
        (length,) = struct.unpack_from("<Q", blob, pos)
        start, end = pos + 12, pos + 12 + length
        if end + 4 > len(blob):
            return  # a record still being written
        yield blob[start:end]
        pos = end + 4


def read_scalars(path: Path, tags: set[str] | None = None) -> list[Scalar]:
    """Every scalar in one event file (of `tags`, when given); a damaged record ends the read."""
    found: list[Scalar] = []
    try:
        blob = path.read_bytes()
    except OSError:
        return found
    for record in _records(blob):
        wall_time, step, summary = 0.0, 0, b""
        try:
            for number, _, value in _fields(record):
                if number == 1 and isinstance(value, bytes) and len(value) == 8:
                    wall_time = float(struct.unpack("<d", value)[0])
                elif number == 2 and isinstance(value, int):
                    step = value
                elif number == 5 and isinstance(value, bytes):
                    summary = value
            values = list(_values(summary)) if summary else []
        except (ValueError, struct.error):
            break
        found += [Scalar(tag, step, v, wall_time) for tag, v in values if tags is None or tag in tags]
    return found
