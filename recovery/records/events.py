"""One raw event: parse and validate a record value (the live worker's per-record check, reusable in bulk code).

A valid event has every field of the spec's ``[fields]`` table with the right type: ``id`` and ``key`` non-empty
strings, ``seq`` an integer >= 0, ``time`` (event time, epoch ms) an integer >= 0, ``price`` and ``volume``
finite numbers >= 0 (booleans are not numbers). Anything else is malformed and gets a reason of the form
``"<category>: <detail>"``; the categories are :data:`REASON_CATEGORIES`, which is what counters group by.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from recovery.formats import KEY_SEPARATOR, AvroSource, EventsSpec, get_path, parse_path
from recovery.records.reasons import (
    BAD_JSON,
    BAD_VALUE,
    EMPTY,
    ENCODING,
    MISSING,
    NOT_OBJECT,
    WRONG_TYPE,
    json_error,
)
from recovery.spec import FieldsSpec

# Canonical columns in the order of recovery.frames.EVENTS.
CANONICAL: tuple[str, ...] = ("event_id", "key", "seq", "ts", "price", "volume")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_event(
    value: bytes | None, layout: FieldsSpec | EventsSpec, timestamp_ms: int | None = None
) -> dict[str, Any] | str:
    """The event in canonical names (event_id, key, seq, ts and the value columns), or why it is malformed.

    ``timestamp_ms``: the record's Kafka timestamp (the event time when the layout says ``time_from = "kafka"``).
    Never raises on bad input: the live worker counts and skips a malformed record and carries on. JSON only;
    Avro values are decoded first and judged by :func:`event_from_object`.
    """
    if isinstance(layout, EventsSpec) and not layout.is_flat_legacy:
        data = decode_value(value, layout.avro)
        return data if isinstance(data, str) else event_from_object(data, layout, value, timestamp_ms)
    fields = layout if isinstance(layout, FieldsSpec) else as_fields(layout)
    return _parse_flat(value, fields)


def as_fields(layout: EventsSpec) -> FieldsSpec:
    """The [fields] table of a flat tick layout (``layout.is_flat_legacy``)."""

    def name(path: str | None) -> str:
        assert path is not None
        return parse_path(path, "")[0]

    return FieldsSpec(
        id=name(layout.id),
        key=name(layout.key[0]),
        time=name(layout.time),
        seq=name(layout.seq),
        price=name(layout.values["price"]),
        volume=name(layout.values["volume"]),
    )


def decode_value(value: bytes | None, avro: AvroSource | None) -> Any | str:
    """A record value decoded as JSON, or as Avro in the Confluent wire format when ``avro`` says where the
    schemas are; a reason string when it does not decode."""
    if avro is None:
        return decode_json(value)
    from recovery.records.avro import codec_for  # fastavro and the registry client: only for Avro values

    return codec_for(avro.registry_url, avro.schema_files, avro.reader_schema).decode(value)


def decode_json(value: bytes | None) -> Any | str:
    """The JSON document of a record value, or why it is not one (a reason string)."""
    if not value:
        return f"{EMPTY}: no bytes" if value is not None else f"{EMPTY}: null value (tombstone)"
    try:
        return json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        return f"{ENCODING}: value is not UTF-8"
    except json.JSONDecodeError as exc:
        return f"{BAD_JSON}: {json_error(exc.msg, exc.pos)}"
    except RecursionError:
        return f"{BAD_JSON}: nested too deeply"


def content_id(value: bytes) -> str:
    """The id of an event whose layout has no id field: a hash of its record value."""
    return hashlib.blake2b(value, digest_size=16).hexdigest()


def iso_ms(raw: str, path: str) -> int | str:
    """Epoch ms (floored) of an ISO-8601 time (no zone means UTC; a trailing Z is UTC), or why not."""
    try:
        parsed = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith("Z") else raw)
    except ValueError:
        return f"{BAD_VALUE}: {path} is not ISO-8601: {raw[:40]!r}"
    parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // _ONE_MS


def _time_ms(raw: Any, unit: str, path: str) -> int | str:
    """Event time in epoch ms from a field in ``unit``, or why not."""
    if unit == "iso":
        if not isinstance(raw, str):
            return f"{WRONG_TYPE}: {path} must be an ISO-8601 string, got {type(raw).__name__}"
        found = iso_ms(raw, path)
        if isinstance(found, str):
            return found
        ms = found
    elif unit == "s":
        if not _is_number(raw):
            return f"{WRONG_TYPE}: {path} must be a number (epoch seconds), got {type(raw).__name__}"
        if isinstance(raw, float) and not math.isfinite(raw):
            return f"{BAD_VALUE}: {path} is {raw}"
        ms = raw * 1000 if isinstance(raw, int) else round(raw * 1000)
    else:
        if not _is_int(raw):
            return f"{WRONG_TYPE}: {path} must be an integer (epoch ms), got {type(raw).__name__}"
        ms = raw
    if ms < 0:
        return f"{BAD_VALUE}: {path} is negative"
    if ms >= 2**63:
        return f"{BAD_VALUE}: {path} does not fit 64 bits"
    return int(ms)


def event_from_object(
    data: Any, layout: EventsSpec, value: bytes | None = None, timestamp_ms: int | None = None
) -> dict[str, Any] | str:
    """The canonical event of a decoded record (a JSON object or an Avro record), or why it is malformed."""
    if not isinstance(data, dict):
        return f"{NOT_OBJECT}: got {type(data).__name__}"
    wanted = [*layout.key, *(p for p in (layout.time, layout.seq, layout.id) if p is not None), *layout.values.values()]
    got = {p: get_path(data, parse_path(p, "")) for p in wanted}
    absent = [p for p in wanted if got[p] is None]
    if absent:
        return f"{MISSING}: {', '.join(absent)}"
    parts = []
    for path in layout.key:
        part = got[path]
        if isinstance(part, str) and part:
            parts.append(part)
        elif _is_int(part):
            parts.append(str(part))
        else:
            what = "is empty" if part == "" else f"must be a string or an integer, got {type(part).__name__}"
            return f"{WRONG_TYPE if part != '' else BAD_VALUE}: {path} {what}"
    event: dict[str, Any] = {"key": KEY_SEPARATOR.join(parts)}
    if layout.id is not None:
        event_id = got[layout.id]
        if _is_int(event_id):
            event_id = str(event_id)
        if not isinstance(event_id, str):
            return f"{WRONG_TYPE}: {layout.id} must be a string, got {type(event_id).__name__}"
        if not event_id:
            return f"{BAD_VALUE}: {layout.id} is empty"
        event["event_id"] = event_id
    else:
        event["event_id"] = content_id(value or b"")
    if layout.seq is not None:
        seq = got[layout.seq]
        if not _is_int(seq):
            return f"{WRONG_TYPE}: {layout.seq} must be an integer, got {type(seq).__name__}"
        if not 0 <= seq < 2**63:
            return f"{BAD_VALUE}: {layout.seq} is negative" if seq < 0 else f"{BAD_VALUE}: {layout.seq} is too large"
        event["seq"] = seq
    else:
        event["seq"] = None
    if layout.time_from == "kafka":
        if timestamp_ms is None or timestamp_ms < 0:
            return f"{BAD_VALUE}: the record has no Kafka timestamp"
        event["ts"] = timestamp_ms
    else:
        assert layout.time is not None
        ts = _time_ms(got[layout.time], layout.time_unit, layout.time)
        if isinstance(ts, str):
            return ts
        event["ts"] = ts
    for column, path in layout.values.items():
        number = got[path]
        if not _is_number(number):
            return f"{WRONG_TYPE}: {path} must be a number, got {type(number).__name__}"
        try:
            as_float = float(number)
        except OverflowError:
            return f"{BAD_VALUE}: {path} is too large"
        if not math.isfinite(as_float):
            return f"{BAD_VALUE}: {path} is {as_float}"
        if as_float < 0 and column in layout.non_negative:
            return f"{BAD_VALUE}: {path} is negative"
        event[column] = as_float
    return event


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _parse_flat(value: bytes | None, fields: FieldsSpec) -> dict[str, Any] | str:
    """The tick layout's rules: a flat JSON object, every field present, times in ms, price/volume >= 0."""
    if not value:
        return f"{EMPTY}: no bytes" if value is not None else f"{EMPTY}: null value (tombstone)"
    try:
        data = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        return f"{ENCODING}: value is not UTF-8"
    except json.JSONDecodeError as exc:
        return f"{BAD_JSON}: {json_error(exc.msg, exc.pos)}"
    except RecursionError:
        return f"{BAD_JSON}: nested too deeply"
    if not isinstance(data, dict):
        return f"{NOT_OBJECT}: got {type(data).__name__}"
    names = (fields.id, fields.key, fields.seq, fields.time, fields.price, fields.volume)
    absent = [n for n in names if n not in data or data[n] is None]
    if absent:
        return f"{MISSING}: {', '.join(absent)}"
    event_id, key, seq, ts, price, volume = (data[n] for n in names)
    for name, got, ok, want in (
        (fields.id, event_id, isinstance(event_id, str), "a string"),
        (fields.key, key, isinstance(key, str), "a string"),
        (fields.seq, seq, _is_int(seq), "an integer"),
        (fields.time, ts, _is_int(ts), "an integer (epoch ms)"),
        (fields.price, price, _is_number(price), "a number"),
        (fields.volume, volume, _is_number(volume), "a number"),
    ):
        if not ok:
            return f"{WRONG_TYPE}: {name} must be {want}, got {type(got).__name__}"
    if not event_id or not key:
        return f"{BAD_VALUE}: {fields.id if not event_id else fields.key} is empty"
    if seq < 0 or ts < 0:
        return f"{BAD_VALUE}: {fields.seq if seq < 0 else fields.time} is negative"
    if seq >= 2**63 or ts >= 2**63:
        return f"{BAD_VALUE}: {fields.seq if seq >= 2**63 else fields.time} does not fit 64 bits"
    numbers = []
    for name, number in ((fields.price, price), (fields.volume, volume)):
        try:
            as_float = float(number)
        except OverflowError:
            return f"{BAD_VALUE}: {name} is too large"
        if not math.isfinite(as_float):
            return f"{BAD_VALUE}: {name} is {as_float}"
        if as_float < 0:
            return f"{BAD_VALUE}: {name} is negative"
        numbers.append(as_float)
    return {"event_id": event_id, "key": key, "seq": seq, "ts": ts, "price": numbers[0], "volume": numbers[1]}
