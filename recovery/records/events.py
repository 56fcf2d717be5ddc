"""One raw event: parse and validate a record value (the live worker's per-record check, reusable in bulk code).

A valid event has every field of the spec's ``[fields]`` table with the right type: ``id`` and ``key`` non-empty
strings, ``seq`` an integer >= 0, ``time`` (event time, epoch ms) an integer >= 0, ``price`` and ``volume``
finite numbers >= 0 (booleans are not numbers). Anything else is malformed and gets a reason of the form
``"<category>: <detail>"``; the categories are :data:`REASON_CATEGORIES`, which is what counters group by.
"""

from __future__ import annotations

import json
import math
from typing import Any

from recovery.spec import FieldsSpec

EMPTY = "empty value"
ENCODING = "bad encoding"
BAD_JSON = "bad JSON"
NOT_OBJECT = "not an object"
MISSING = "missing field"
WRONG_TYPE = "wrong type"
BAD_VALUE = "bad value"
REASON_CATEGORIES: tuple[str, ...] = (EMPTY, ENCODING, BAD_JSON, NOT_OBJECT, MISSING, WRONG_TYPE, BAD_VALUE)

# Canonical columns in the order of recovery.frames.EVENTS.
CANONICAL: tuple[str, ...] = ("event_id", "key", "seq", "ts", "price", "volume")

# How much of a bad record value a quarantine row keeps for display.
DISPLAY_CHARS = 200


def reason_category(reason: str) -> str:
    """The category of a reason string (what counters group by)."""
    return reason.split(":", 1)[0]


def display_value(raw: bytes | None) -> str:
    """A raw value as text for a quarantine row: lossily decoded and truncated."""
    if raw is None:
        return ""
    text = raw[: DISPLAY_CHARS * 4].decode("utf-8", "replace")
    return text if len(text) <= DISPLAY_CHARS else text[: DISPLAY_CHARS - 1] + "…"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_event(value: bytes | None, fields: FieldsSpec) -> dict[str, Any] | str:
    """The event in canonical names (event_id, key, seq, ts, price, volume), or why it is malformed.

    Never raises on bad input: the live worker counts and skips a malformed record and carries on.
    """
    if not value:
        return f"{EMPTY}: no bytes" if value is not None else f"{EMPTY}: null value (tombstone)"
    try:
        data = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        return f"{ENCODING}: value is not UTF-8"
    except json.JSONDecodeError as exc:
        return f"{BAD_JSON}: {exc.msg} at char {exc.pos}"
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
