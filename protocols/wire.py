"""Length-prefixed wire fields shared by every scheme's messages and bundles.

A record is ``magic (4 bytes) || count (u16) || (len u32 || bytes)*``; any mismatch —
wrong magic, wrong field count, a length running past the end, trailing bytes — is a
:class:`MalformedMessage`, so a garbled or truncated payload never reaches a parser
that might misread it.
"""
from __future__ import annotations

import struct
from typing import Sequence

import numpy as np

from .errors import MalformedMessage


def pack(magic: bytes, fields: Sequence[bytes]) -> bytes:
    if len(magic) != 4:
        raise ValueError("magic must be 4 bytes")
    out = [magic, struct.pack(">H", len(fields))]
    for f in fields:
        f = bytes(f)
        out.append(struct.pack(">I", len(f)))
        out.append(f)
    return b"".join(out)


def unpack(magic: bytes, data: bytes, count: int | None = None, what: str = "message") -> list[bytes]:
    data = bytes(data)
    if len(data) < 6 or data[:4] != magic:
        raise MalformedMessage(f"{what}: wrong magic or too short ({len(data)} bytes)")
    (n,) = struct.unpack(">H", data[4:6])
    if count is not None and n != count:
        raise MalformedMessage(f"{what}: expected {count} fields, got {n}")
    off, out = 6, []
    for _ in range(n):
        if off + 4 > len(data):
            raise MalformedMessage(f"{what}: truncated field header")
        (ln,) = struct.unpack(">I", data[off:off + 4])
        off += 4
        if off + ln > len(data):
            raise MalformedMessage(f"{what}: field length runs past the end")
        out.append(data[off:off + ln])
        off += ln
    if off != len(data):
        raise MalformedMessage(f"{what}: {len(data) - off} trailing bytes")
    return out


def u32(x: int) -> bytes:
    return struct.pack(">I", x)


def read_u32(b: bytes, what: str = "field") -> int:
    if len(b) != 4:
        raise MalformedMessage(f"{what}: expected 4 bytes, got {len(b)}")
    return struct.unpack(">I", b)[0]


def hashes_to_bytes(h: np.ndarray) -> bytes:
    return np.ascontiguousarray(h, dtype=np.uint8).tobytes()


def bytes_to_hashes(b: bytes, width: int, what: str = "hash list") -> np.ndarray:
    if width <= 0 or len(b) % width:
        raise MalformedMessage(f"{what}: {len(b)} bytes is not a multiple of {width}")
    return np.frombuffer(b, dtype=np.uint8).reshape(-1, width).copy()
