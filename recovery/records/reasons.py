"""Why a record is malformed: reason strings of the form ``"<category>: <detail>"`` and their categories.

Counters and reports group by category; every decoder (JSON events, Avro, output records) uses these.
"""

from __future__ import annotations

EMPTY = "empty value"
ENCODING = "bad encoding"
BAD_JSON = "bad JSON"
NOT_OBJECT = "not an object"
MISSING = "missing field"
WRONG_TYPE = "wrong type"
BAD_VALUE = "bad value"
REASON_CATEGORIES: tuple[str, ...] = (EMPTY, ENCODING, BAD_JSON, NOT_OBJECT, MISSING, WRONG_TYPE, BAD_VALUE)

# How much of a bad record value a quarantine row keeps for display.
DISPLAY_CHARS = 200


def reason_category(reason: str) -> str:
    """The category of a reason string (what counters group by)."""
    return reason.split(":", 1)[0]


def json_error(msg: str, pos: int) -> str:
    """A JSON decoding error as a reason detail: ``"Expecting value at char 0"``.

    Some of Python's messages already end in "at" (``"Unterminated string starting at"``): the position
    follows them directly, not after a second "at".
    """
    return f"{msg} char {pos}" if msg.endswith(" at") else f"{msg} at char {pos}"


def display_value(raw: bytes | None) -> str:
    """A raw value as text for a quarantine row: lossily decoded and truncated."""
    if raw is None:
        return ""
    text = raw[: DISPLAY_CHARS * 4].decode("utf-8", "replace")
    return text if len(text) <= DISPLAY_CHARS else text[: DISPLAY_CHARS - 1] + "…"
