"""Intermediate keys: their order, their byte encoding and the stable partition hash.

Keys may be ``None``, ``bool``, ``int``, ``float``, ``bytes``, ``str`` or tuples of
these. Keys of one type sort in Python's natural order. Keys of different types may be
mixed in one job; they then sort by type first, in the order

    None < bool < int < float < bytes < str < tuple

so ``1`` and ``1.0`` are different keys, and ``"10"`` comes after every number.
``-0.0`` and ``0.0`` are one key; NaN sorts after every other float. Integer keys are
limited to 1008 bits.

Every key has an order-preserving byte encoding (``encode_key``): comparing two
encodings as bytes gives the same answer as comparing the keys. Map outputs store keys
in that form when a run holds anything other than plain ``str`` or ``int`` keys, so
that Arrow can sort them in C and a reducer can merge runs written by different
processes without unpickling.

The partition of a key is ``crc32(encode_key(key)) % R``: the same in every process
and on every machine, unlike Python's ``hash()``, which is salted per process.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from .errors import KeyTypeError

NONE, BOOL, INT, FLOAT, BYTES, STR, TUPLE = (bytes([code]) for code in range(1, 8))
_END = b"\x00"
_MAX_INT_BYTES = 126


def encode_key(key: Any) -> bytes:
    """The order-preserving byte form of ``key``."""
    out = bytearray()
    _encode_into(key, out, nested=False)
    return bytes(out)


def decode_key(data: bytes) -> Any:
    """Invert ``encode_key``."""
    key, pos = _decode_from(data, 0, nested=False)
    if pos != len(data):
        raise ValueError(f"trailing bytes after encoded key at {pos}")
    return key


def partition_for(key: Any, num_partitions: int) -> int:
    """The default partition of ``key``: a stable hash modulo ``num_partitions``."""
    if type(key) is str:
        return zlib.crc32(STR + key.encode("utf-8", "surrogatepass")) % num_partitions
    return zlib.crc32(encode_key(key)) % num_partitions


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff") + b"\x00\x00"


def _encode_into(key: Any, out: bytearray, nested: bool) -> None:
    kind = type(key)
    if kind is str:
        raw = key.encode("utf-8", "surrogatepass")
        out += STR + (_escape(raw) if nested else raw)
    elif kind is int:
        out += INT + _encode_int(key)
    elif kind is tuple:
        out += TUPLE
        for item in key:
            _encode_into(item, out, nested=True)
        out += _END
    elif key is None:
        out += NONE
    elif kind is bool:
        out += BOOL + (b"\x01" if key else b"\x00")
    elif kind is float:
        out += FLOAT + _encode_float(key)
    elif kind is bytes:
        out += BYTES + (_escape(key) if nested else key)
    else:
        raise KeyTypeError(
            f"a key of type {kind.__name__} ({key!r:.60}) cannot be used as an intermediate key: "
            "keys must be str, bytes, int, float, bool, None or tuples of these "
            "(put other objects in the value)"
        )


def _encode_int(value: int) -> bytes:
    magnitude = abs(value)
    raw = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")
    if len(raw) > _MAX_INT_BYTES:
        raise KeyTypeError(f"integer key too large to order ({value.bit_length()} bits; the limit is 1008)")
    if value >= 0:
        return bytes([0x80 + len(raw)]) + raw
    inverted = bytes(255 - b for b in raw)
    return bytes([0x7F - len(raw)]) + inverted


def _encode_float(value: float) -> bytes:
    if value == 0.0 or value != value:
        value = abs(value)  # -0.0 == 0.0 in Python, so they are one key; every NaN is one key too
    (bits,) = struct.unpack(">Q", struct.pack(">d", value))
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
    return struct.pack(">Q", bits)


def _decode_from(data: bytes, pos: int, nested: bool) -> tuple[Any, int]:
    tag = data[pos : pos + 1]
    pos += 1
    if tag == STR or tag == BYTES:
        raw, pos = _unescape(data, pos) if nested else (data[pos:], len(data))
        return (raw.decode("utf-8", "surrogatepass") if tag == STR else raw), pos
    if tag == INT:
        head = data[pos]
        if head >= 0x80:
            size = head - 0x80
            return int.from_bytes(data[pos + 1 : pos + 1 + size], "big"), pos + 1 + size
        size = 0x7F - head
        raw = bytes(255 - b for b in data[pos + 1 : pos + 1 + size])
        return -int.from_bytes(raw, "big"), pos + 1 + size
    if tag == TUPLE:
        items = []
        while data[pos : pos + 1] != _END:
            item, pos = _decode_from(data, pos, nested=True)
            items.append(item)
        return tuple(items), pos + 1
    if tag == NONE:
        return None, pos
    if tag == BOOL:
        return data[pos] == 1, pos + 1
    if tag == FLOAT:
        (bits,) = struct.unpack(">Q", data[pos : pos + 8])
        bits = bits ^ (1 << 63) if bits >> 63 else bits ^ 0xFFFFFFFFFFFFFFFF
        return struct.unpack(">d", struct.pack(">Q", bits))[0], pos + 8
    raise ValueError(f"unknown key tag {tag!r} at {pos - 1}")


def _unescape(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while True:
        end = data.index(b"\x00", pos)
        out += data[pos:end]
        if data[end + 1] == 0xFF:
            out += b"\x00"
            pos = end + 2
        else:
            return bytes(out), end + 2
