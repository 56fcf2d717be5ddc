"""Validate raw records into events: valid ones to EVENTS, malformed ones to QUARANTINE with a reason.

Validation is bulk first: values are decoded as JSON by polars in one pass and checked with column
expressions. Only the rows that the bulk pass cannot vouch for (decode errors, suspicious types, failed
checks) go through :func:`recovery.records.events.parse_event`, the live worker's per-record rules, which also
name the reason. The bulk pass accepts a row only if those rules would, so the recovery and the live
worker agree on what is malformed. A malformed record never stops a run: it is quarantined with its
partition, offset and reason, and counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import polars as pl

from recovery.errors import DataError
from recovery.formats import EventsSpec
from recovery.frames import EVENTS, QUARANTINE, RECORDS, conform, empty, events_schema
from recovery.records.compiled import MATCHED, Template, template_columns
from recovery.records.events import as_fields, parse_event
from recovery.records.reasons import display_value, reason_category
from recovery.spec import FieldsSpec, PipelineSpec

# canonical column -> kind of JSON value it must hold
_KINDS: dict[str, str] = {
    "event_id": "string",
    "key": "string",
    "seq": "int",
    "ts": "int",
    "price": "number",
    "volume": "number",
}


def require_columns(frame: pl.DataFrame, schema: pl.Schema, what: str) -> None:
    """:class:`DataError` naming the missing columns when ``frame`` is not a ``what`` frame."""
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise DataError(
            f"expected a {what} frame, it lacks column(s) {', '.join(missing)}",
            hint=f"{what} columns: {', '.join(schema)} (see recovery.frames)",
        )


def _json_names(fields: FieldsSpec) -> dict[str, str]:
    """canonical column -> JSON field name."""
    return {canonical: name for name, canonical in fields.json_to_canonical().items()}


def _struct_dtype(fields: FieldsSpec) -> pl.Struct:
    names = _json_names(fields)
    return pl.Struct({names[c]: EVENTS[c] for c in _KINDS})


def _type_patterns(fields: FieldsSpec) -> dict[str, str]:
    """Regexes proving each field holds a literal of the right JSON kind (polars' decoder coerces some)."""
    names = _json_names(fields)
    patterns = {}
    for canonical, kind in _KINDS.items():
        quoted = re.escape(json.dumps(names[canonical]))
        if kind == "string":
            patterns[canonical] = rf'{quoted}\s*:\s*"'
        elif kind == "int":
            patterns[canonical] = rf"{quoted}\s*:\s*-?\d+\s*[,}}]"
        else:
            patterns[canonical] = rf"{quoted}\s*:\s*-?\d"
    return patterns


# A flat JSON object of strings, numbers, booleans and nulls: what polars decodes without raising once
# each field's literal has the right kind. Anything else (nesting, odd escapes, huge exponents) is
# left to the per-record rules.
_STR = r'"(?:[^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
_NUM = r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d{1,2})?"
_MEMBER = rf"{_STR}\s*:\s*(?:{_STR}|{_NUM}|true|false|null)"
FLAT_OBJECT_RE = rf"^\s*\{{\s*{_MEMBER}(?:\s*,\s*{_MEMBER})*\s*\}}\s*$"


# What one regex pass can capture exactly as a JSON decoder would read it: strings without escapes or control
# characters (their bytes are their value), integers in JSON's grammar, non-negative numbers (a negative price or
# volume is malformed: the per-record rules say why). polars parses the captured numbers correctly rounded.
_PLAIN_STR = r'"([^"\\\x00-\x1f]*)"'
_PLAIN_INT = r"(-?(?:0|[1-9][0-9]*))"
_PLAIN_NUM = r"((?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
_CAPTURES = {"string": _PLAIN_STR, "int": _PLAIN_INT, "number": _PLAIN_NUM}


def canonical_event_re(fields: FieldsSpec) -> str:
    """The exact record the toolkit's producers write (its fields in canonical order, compact, nothing else),
    one capture group per field: such rows are decoded by one regex pass instead of a JSON parser."""
    names = _json_names(fields)
    members = [f"{re.escape(json.dumps(names[c]))}:{_CAPTURES[kind]}" for c, kind in _KINDS.items()]
    return rf"^\{{{','.join(members)}\}}$"


_TEMPLATE_KINDS = {"string": "str", "int": "int", "number": "num+"}  # the same fields as _CAPTURES


def canonical_event_template(fields: FieldsSpec) -> Template:
    """:func:`canonical_event_re` as a template of the compiled decoder (:mod:`recovery.records.compiled`)."""
    names = _json_names(fields)
    literals = [("{" if i == 0 else ",") + json.dumps(names[c]) + ":" for i, c in enumerate(_KINDS)]
    return Template(
        literals=(*(lit.encode() for lit in literals), b"}"),
        kinds=tuple(_TEMPLATE_KINDS[kind] for kind in _KINDS.values()),
        names=tuple(f"_{c}" for c in _KINDS),
    )


def _canonical_by_regex(rows: pl.DataFrame, fields: FieldsSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in the canonical layout with their ``_<column>`` values, the other rows): the regex pass, when the
    compiled decoder is not built."""
    groups = pl.col("_text").str.extract_groups(canonical_event_re(fields))
    decoded = rows.with_columns(groups.alias("_groups")).unnest("_groups")
    matched = pl.col("1").is_not_null()
    values = [
        pl.col(str(i)).cast(EVENTS[c], strict=False).alias(f"_{c}")  # overflow: null, judged per record
        for i, c in enumerate(_KINDS, start=1)
    ]
    captured = [str(i) for i in range(1, len(_KINDS) + 1)]
    rest = decoded.filter(~matched).select(rows.columns)
    return decoded.filter(matched).with_columns(values).drop(captured), rest


def _acceptable() -> pl.Expr:
    """The decoded ``_<column>`` values of a row make a valid event (what the per-record rules check)."""
    return pl.all_horizontal(
        *[pl.col(f"_{c}").is_not_null() for c in _KINDS],
        pl.col("_event_id").str.len_bytes() > 0,
        pl.col("_key").str.len_bytes() > 0,
        pl.col("_seq") >= 0,
        pl.col("_ts") >= 0,
        pl.col("_price").is_finite() & (pl.col("_price") >= 0),
        pl.col("_volume").is_finite() & (pl.col("_volume") >= 0),
    ).fill_null(False)


_WHERE = ("_row", "partition", "offset", "timestamp_ms")
# at most this many rows the compiled pass left are checked one by one (~20 us each), more go through the bulk
# passes first (a few ms whatever their number, then one by one for what those leave)
FEW_ROWS = 200


def _as_events(decoded: pl.DataFrame) -> pl.DataFrame:
    return decoded.select(*_WHERE, *[pl.col(f"_{c}").alias(c) for c in _KINDS])


def _bulk_decode(frame: pl.DataFrame, fields: FieldsSpec) -> pl.DataFrame:
    """Decode the ``_text`` of every row at once (raises when some row is not decodable)."""
    event = pl.col("_text").str.json_decode(_struct_dtype(fields)).struct.rename_fields([f"_{c}" for c in _KINDS])
    return frame.with_columns(event.alias("_event")).unnest("_event")


def _split_decodable(
    frame: pl.DataFrame, decode: Callable[[pl.DataFrame], pl.DataFrame]
) -> tuple[list[pl.DataFrame], pl.DataFrame]:
    """Decode ``frame`` in bulk; if that fails (rare: the gate lets only well-formed rows through),
    bisect down to the rows that fail on their own. Returns the decoded chunks and the failing rows.
    """
    decoded: list[pl.DataFrame] = []
    failed: list[pl.DataFrame] = []
    # an explicit stack, not a recursive closure: a closure that calls itself is a reference cycle, which would
    # keep every decoded chunk of every batch alive until the cyclic garbage collector happens to run
    stack = [frame] if frame.height else []
    while stack:
        chunk = stack.pop()
        try:
            decoded.append(decode(chunk))
            continue
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OverflowError):
            pass
        if chunk.height == 1:
            failed.append(chunk)
            continue
        half = (chunk.height + 1) // 2
        stack += [chunk.slice(half), chunk.slice(0, half)]  # the first half is decoded first
    return decoded, (pl.concat(failed) if failed else frame.clear())


def _with_text(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` plus ``_text``: the value as a string, null where it is null or not UTF-8."""
    try:
        return rows.with_columns(pl.col("value").cast(pl.String).alias("_text"))
    except pl.exceptions.PolarsError:  # some value is not UTF-8: find which, one by one
        texts = [_utf8_or_none(v) for v in rows.get_column("value").to_list()]
        return rows.with_columns(pl.Series("_text", texts, dtype=pl.String))


def _utf8_or_none(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def event_layout(spec: PipelineSpec | FieldsSpec | EventsSpec) -> EventsSpec:
    """The events' layout of a spec, of a ``[fields]`` table or itself."""
    if isinstance(spec, PipelineSpec):
        return spec.layout
    return spec.events() if isinstance(spec, FieldsSpec) else spec


def validate(records: pl.DataFrame, spec: PipelineSpec | FieldsSpec | EventsSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split RECORDS into valid EVENTS and QUARANTINE (each in record order); never raises on bad data.

    The events have the layout's value columns (``events_schema``). The toolkit's own flat tick layout is
    validated in bulk; other layouts record by record.
    """
    layout = event_layout(spec)
    require_columns(records, RECORDS, "RECORDS")
    schema = events_schema(layout.value_columns)
    if records.height == 0:
        return empty(schema), empty(QUARANTINE)
    if not layout.is_flat_legacy:
        checked, bad = _check_rows(records.select(list(RECORDS)).with_row_index("_row"), layout, schema)
        return conform(checked.drop("_row"), schema), conform(bad.drop("_row"), QUARANTINE)
    fields = as_fields(layout)
    rows = records.select(list(RECORDS)).with_row_index("_row")
    valid_chunks = []
    decoded_chunks = []
    # the exact layout the toolkit's producers write, decoded and checked in one compiled pass over the bytes;
    # only the rows it does not accept (a few per batch) take the paths below, which name the reason
    compiled = template_columns(rows.get_column("value"), canonical_event_template(fields))
    if compiled is not None:
        decoded = pl.concat([rows.select(_WHERE), compiled.drop(MATCHED)], how="horizontal")
        accepted = compiled.get_column(MATCHED) & decoded.select(_acceptable()).to_series()
        valid_chunks.append(_as_events(decoded.filter(accepted)))
        rows = rows.filter(~accepted)
        if rows.height <= FEW_ROWS:  # the bulk passes' fixed cost (a few ms) is more than these rows' checks
            return _with_checked(valid_chunks, rows, fields)
        rows = _with_text(rows)
    else:
        rows = _with_text(rows)
        canonical, rows = _canonical_by_regex(rows, fields)
        decoded_chunks.append(canonical)
    gate = pl.all_horizontal(
        pl.col("_text").str.contains(FLAT_OBJECT_RE),
        *[pl.col("_text").str.contains(p) for p in _type_patterns(fields).values()],
    ).fill_null(False)
    rows = rows.with_columns(gate.alias("_gate"))
    bulk_chunks, undecodable = _split_decodable(rows.filter("_gate"), lambda f: _bulk_decode(f, fields))
    decoded_chunks.extend(bulk_chunks)
    suspects = [rows.filter(~pl.col("_gate")).drop("_gate"), undecodable.drop("_gate")]
    for chunk in decoded_chunks:
        ok = _acceptable()
        chunk = chunk.with_columns(ok.alias("_ok"))
        valid_chunks.append(_as_events(chunk.filter("_ok")))
        suspects.append(chunk.filter(~pl.col("_ok")).select("_row", *RECORDS))
    return _with_checked(valid_chunks, pl.concat([frame.select("_row", *RECORDS) for frame in suspects]), fields)


def _with_checked(
    valid_chunks: list[pl.DataFrame], rows: pl.DataFrame, fields: FieldsSpec
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(EVENTS, QUARANTINE) in record order: the chunks validated in bulk, plus ``rows`` (``_row`` and RECORDS)
    checked one by one."""
    checked_events, quarantined = _check_rows(rows, fields, EVENTS)
    parts = [chunk for chunk in (*valid_chunks, checked_events) if chunk.height]
    if len(parts) == 1:  # in record order already (usually the compiled pass's rows, the rest being malformed)
        events = parts[0]
    else:
        events = pl.concat(parts, how="vertical_relaxed").sort("_row") if parts else checked_events
    return conform(events, EVENTS), conform(quarantined.sort("_row").drop("_row"), QUARANTINE)


def _check_rows(
    rows: pl.DataFrame, layout: FieldsSpec | EventsSpec, schema: pl.Schema
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Apply the per-record rules (to the few rows the bulk pass could not accept, or to every row)."""
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for row in rows.iter_rows(named=True):
        parsed = parse_event(row["value"], layout, row["timestamp_ms"])
        where = {k: row[k] for k in ("_row", "partition", "offset", "timestamp_ms")}
        if isinstance(parsed, dict):
            good.append({**where, **parsed})
        else:
            key = None if row["key"] is None else display_value(row["key"])
            bad.append({**where, "key": key, "value": display_value(row["value"]), "reason": parsed})
    good_schema = pl.Schema([("_row", pl.UInt32), *schema.items()])
    bad_schema = pl.Schema([("_row", pl.UInt32), *QUARANTINE.items()])
    return pl.DataFrame(good, schema=good_schema), pl.DataFrame(bad, schema=bad_schema)


def quarantine_counts(quarantine: pl.DataFrame, *, by_category: bool = True) -> dict[str, int]:
    """Quarantined records per reason category (``missing field``, ``bad JSON``, ...) or per full reason."""
    if quarantine.height == 0:
        return {}
    reason = pl.col("reason")
    if by_category:
        reason = reason.map_elements(reason_category, return_dtype=pl.String)
    counts = quarantine.group_by(reason.alias("reason")).len().sort(["len", "reason"], descending=[True, False])
    return {r: int(n) for r, n in counts.iter_rows()}
