"""Writes TensorBoard event files the way `SummaryWriter.add_scalar` does, for tests of the reader
(`fplora.curves.tfevents`): fplora itself only reads them, so the writer lives with the tests."""

from __future__ import annotations

import struct


def _masked_crc(data: bytes) -> int:
    """TensorFlow's masked CRC-32C, so that readers which check it accept the files."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _key(number: int, wire: int) -> bytes:
    return _varint_bytes(number << 3 | wire)


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _message(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint_bytes(len(payload)) + payload


def encode_scalar(tag: str, step: int, value: float, wall_time: float) -> bytes:
    """One TFRecord holding one `simple_value` event, as `SummaryWriter.add_scalar` writes it."""
    summary_value = _message(1, tag.encode()) + _key(2, 5) + struct.pack("<f", value)
    event = (
        _key(1, 1)
        + struct.pack("<d", wall_time)
        + _key(2, 0)
        + _varint_bytes(step)
        + _message(5, _message(1, summary_value))
    )
    length = struct.pack("<Q", len(event))
    return length + struct.pack("<I", _masked_crc(length)) + event + struct.pack("<I", _masked_crc(event))
