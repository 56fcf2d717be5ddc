"""A plain Avro binary writer for tests, written from the Avro spec (zig-zag varints, little-endian doubles).

It covers the few types the test schemas use and is independent of fastavro, so the codec's bytes can be
checked against it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def zigzag_varint(n: int) -> bytes:
    """An Avro int/long: zig-zag then base-128 varint, low group first."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string(text: str) -> bytes:
    raw = text.encode()
    return zigzag_varint(len(raw)) + raw


def double(x: float) -> bytes:
    return struct.pack("<d", x)


def frame(schema_id: int, payload: bytes) -> bytes:
    """Confluent wire format: magic byte 0, 4-byte big-endian id, payload."""
    return b"\x00" + struct.pack(">I", schema_id) + payload


ORDER_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "customer", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "price", "type": "double"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


def order_payload(record: dict[str, Any]) -> bytes:
    """The Avro binary of an ORDER_SCHEMA record, by the spec."""
    note = record["note"]
    return (
        string(record["order_id"])
        + string(record["customer"])
        + zigzag_varint(record["qty"])
        + double(record["price"])
        + zigzag_varint(record["ts"])
        + (zigzag_varint(0) if note is None else zigzag_varint(1) + string(note))
    )


def write_avsc(path: Path, schema: Any) -> Path:
    path.write_text(json.dumps(schema))
    return path
