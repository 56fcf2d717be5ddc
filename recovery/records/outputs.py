"""The output record of the live worker: encoding (what it publishes) and decoding (what compare reads back).

One record per metric result on ``topics.output``, record key = the result's key (UTF-8), value =
``{"metric", "key", "window", "time_ms", "value", "count", "partition", "first_offset", "last_offset",
"worker"}`` as compact JSON (``value`` null for a VWAP over zero volume). The record timestamp is the
result's ``time_ms`` so the output topic can be replayed by event time.

Decoding is done in bulk with polars for records in the canonical layout and record by record (strictly)
for anything else; a record that is not a valid result goes to a QUARANTINE frame with its reason.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import polars as pl

from recovery.frames import OUTPUTS, QUARANTINE, RECORDS, conform, empty
from recovery.metrics.windows import LIVE_RESULTS
from recovery.records.compiled import MATCHED, Template, template_columns
from recovery.records.layout_outputs import OutputLayout
from recovery.records.reasons import (
    BAD_JSON,
    BAD_VALUE,
    EMPTY,
    ENCODING,
    MISSING,
    NOT_OBJECT,
    WRONG_TYPE,
    display_value,
)
from recovery.spec import PipelineSpec

FIELDS: tuple[str, ...] = (
    "metric",
    "key",
    "window",
    "time_ms",
    "value",
    "count",
    "partition",
    "first_offset",
    "last_offset",
    "worker",
)
REQUIRED: tuple[str, ...] = ("metric", "key", "window", "time_ms", "value")

# JSON strings without raw control characters (one record stays one line), integers, numbers.
_STR = r'"(?:[^"\\\x00-\x1f]|\\.)*"'
_STR_NONEMPTY = r'"(?:[^"\\\x00-\x1f]|\\.)+"'  # the metric: an empty one is judged per record
_INT = r"-?\d+"
_NUM = r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
# The exact layout encode_result and encode_results write: such records are decoded in bulk (an integer
# or number out of range makes the bulk decode of its chunk fail, and that chunk is judged record by record).
CANONICAL_RE = (
    rf'^\{{"metric":{_STR_NONEMPTY},"key":{_STR},"window":{_INT},"time_ms":{_INT},"value":(?:null|{_NUM}),'
    rf'"count":{_INT},"partition":{_INT},"first_offset":{_INT},"last_offset":{_INT},"worker":{_STR}\}}$'
)
# The same layout with its decoded fields captured, for the rows one regex pass reads exactly as a JSON decoder
# would: strings without escapes (their bytes are their value), a non-empty metric, integers in JSON's grammar.
_PLAIN = r'"([^"\\\x00-\x1f]*)"'
_PLAIN_INT = r"(-?(?:0|[1-9][0-9]*))"
_JSON_INT = r"-?(?:0|[1-9][0-9]*)"
_JSON_STR = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
_PLAIN_NUM = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
# (captures only in the first fields: a regex that captures after the worker's string runs 4x slower)
PLAIN_FIELDS_RE = (
    rf'^\{{"metric":"([^"\\\x00-\x1f]+)","key":{_PLAIN},"window":{_PLAIN_INT},"time_ms":{_PLAIN_INT},'
    rf'"value":(null|{_PLAIN_NUM}),'
)
PLAIN_RE = (
    rf'{PLAIN_FIELDS_RE}"count":{_JSON_INT},"partition":{_JSON_INT},"first_offset":{_JSON_INT},'
    rf'"last_offset":{_JSON_INT},"worker":{_JSON_STR}\}}$'
)
_DECODED = pl.Schema(
    {"metric": pl.String, "key": pl.String, "window": pl.Int64, "time_ms": pl.Int64, "value": pl.Float64}
)
BULK_CHUNK = 200_000


def encode_result(
    *,
    metric: str,
    key: str,
    window: int,
    time_ms: int,
    value: float | None,
    count: int,
    partition: int,
    first_offset: int,
    last_offset: int,
    worker: str,
) -> bytes:
    """One output record value (compact JSON in the canonical field order)."""
    if value is not None and not math.isfinite(value):
        raise ValueError(f"result {key}|{metric}|{window} has a non-finite value {value!r}")
    record = {
        "metric": metric,
        "key": key,
        "window": int(window),
        "time_ms": int(time_ms),
        "value": None if value is None else float(value),
        "count": int(count),
        "partition": int(partition),
        "first_offset": int(first_offset),
        "last_offset": int(last_offset),
        "worker": worker,
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def encode_results(results: pl.DataFrame, worker: str) -> list[bytes]:
    """Output record values for a LIVE_RESULTS frame, in row order (bulk version of :func:`encode_result`)."""
    if results.height == 0:
        return []
    frame = conform(results, LIVE_RESULTS).with_columns(
        pl.when(pl.col("value").is_finite()).then(pl.col("value")).alias("value"),
        pl.lit(worker, dtype=pl.String).alias("worker"),
    )
    text = frame.select(FIELDS).write_ndjson()
    lines = text.encode().split(b"\n")
    return lines[:-1] if lines and not lines[-1] else lines


def _strict(value: bytes | None) -> dict[str, Any] | str:
    """A decoded result, or why the record is not one (record-by-record path)."""
    if not value:
        return f"{EMPTY}: no bytes" if value is not None else f"{EMPTY}: null value (tombstone)"
    try:
        data = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        return f"{ENCODING}: value is not UTF-8"
    except (ValueError, RecursionError) as exc:
        return f"{BAD_JSON}: {exc}"
    if not isinstance(data, dict):
        return f"{NOT_OBJECT}: got {type(data).__name__}"
    absent = [n for n in REQUIRED if n not in data]
    if absent:
        return f"{MISSING}: {', '.join(absent)}"
    metric, key, window, time_ms, result = (data[n] for n in REQUIRED)
    if not isinstance(metric, str) or not metric:
        return f"{WRONG_TYPE}: metric must be a non-empty string"
    if not isinstance(key, str):
        return f"{WRONG_TYPE}: key must be a string"
    for name, got in (("window", window), ("time_ms", time_ms)):
        if not isinstance(got, int) or isinstance(got, bool):
            return f"{WRONG_TYPE}: {name} must be an integer, got {type(got).__name__}"
        if not -(2**63) <= got < 2**63:
            return f"{BAD_VALUE}: {name} does not fit 64 bits"
    if result is not None:
        if not isinstance(result, int | float) or isinstance(result, bool):
            return f"{WRONG_TYPE}: value must be a number or null, got {type(result).__name__}"
        try:
            result = float(result)
        except OverflowError:
            return f"{BAD_VALUE}: value is too large"
        if not math.isfinite(result):
            return f"{BAD_VALUE}: value is {result}"
    return {"metric": metric, "key": key, "window": window, "time_ms": time_ms, "value": result}


def _decode_slow(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(OUTPUTS + _row, QUARANTINE) of ``rows`` (RECORDS + _row), record by record."""
    good: dict[str, list[Any]] = {name: [] for name in (*OUTPUTS, "_row")}
    bad: dict[str, list[Any]] = {name: [] for name in QUARANTINE}
    for row, partition, offset, ts, key, value in rows.select("_row", *RECORDS.names()).iter_rows():
        parsed = _strict(value)
        if isinstance(parsed, str):
            for name, item in zip(
                QUARANTINE.names(),
                (partition, offset, ts, display_value(key), display_value(value), parsed),
                strict=True,
            ):
                bad[name].append(item)
        else:
            for name in ("key", "metric", "window", "time_ms", "value"):
                good[name].append(parsed[name])
            good["partition"].append(partition)
            good["offset"].append(offset)
            good["timestamp_ms"].append(ts)
            good["_row"].append(row)
    return pl.DataFrame(good, schema={**OUTPUTS, "_row": pl.UInt32}), pl.DataFrame(bad, schema=QUARANTINE)


def _decode_fast(rows: pl.DataFrame) -> pl.DataFrame:
    """OUTPUTS + _row of canonical rows, parsed as one NDJSON document (raises if any row does not parse)."""
    document = rows.select(pl.col("text").str.join("\n")).item()
    decoded = pl.read_ndjson(io.StringIO(document), schema=_DECODED)
    if decoded.height != rows.height or not decoded.get_column("value").is_infinite().not_().all():
        raise ValueError("bulk decode does not line up with the records")
    where = rows.select("partition", "offset", "timestamp_ms", "_row")
    return pl.concat([decoded, where], how="horizontal").select(*OUTPUTS.names(), "_row")


# PLAIN_RE as a template of the compiled decoder (recovery.records.compiled), field for field
PLAIN_TEMPLATE = Template(
    literals=(*(f'{"{" if i == 0 else ","}"{name}":'.encode() for i, name in enumerate(FIELDS)), b"}"),
    kinds=("str+", "str", "int", "int", "num?", "jint", "jint", "jint", "jint", "jstr"),
    names=("_metric", "_key", "_window", "_time_ms", "_value", "", "", "", "", ""),
)


def _decode_plain(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(OUTPUTS + _row of the rows in the layout of :data:`PLAIN_RE`, read in one pass; the other rows)."""
    compiled = template_columns(frame.get_column("value"), PLAIN_TEMPLATE)
    if compiled is not None:
        read = pl.all_horizontal(
            pl.col(MATCHED),
            pl.col("_window").is_not_null(),  # beyond 64 bits: judged per record
            pl.col("_time_ms").is_not_null(),
            pl.col("_value_plain"),  # null or finite, never the integer -0 (1e999: judged per record)
        ).fill_null(False)
        both = pl.concat([frame, compiled], how="horizontal").with_columns(read.alias("_read"))
        read_rows = both.filter("_read").select(
            *(pl.col(f"_{name}").alias(name) for name in ("key", "metric", "window", "time_ms", "value")),
            "partition",
            "offset",
            "timestamp_ms",
            "_row",
        )
        others = [both.filter(~pl.col(MATCHED)), both.filter(pl.col(MATCHED) & ~pl.col("_read"))]
        return read_rows, pl.concat(others).select(frame.columns)
    plain = pl.col("text").str.contains(PLAIN_RE).fill_null(False)
    matched, rest = frame.filter(plain), frame.filter(~plain)
    fields = pl.col("text").str.extract_groups(PLAIN_FIELDS_RE)
    decoded = matched.with_columns(fields.alias("_groups")).unnest("_groups")
    value = pl.col("5").cast(pl.Float64, strict=False)
    read = pl.all_horizontal(
        pl.col("1").is_not_null(),
        pl.col("3").cast(pl.Int64, strict=False).is_not_null(),  # beyond 64 bits: judged per record
        pl.col("4").cast(pl.Int64, strict=False).is_not_null(),
        (value.is_finite() | (pl.col("5") == "null")).fill_null(False),  # 1e999: judged per record
        pl.col("5") != "-0",  # an integer -0 is 0 to a JSON decoder
    ).fill_null(False)
    decoded = decoded.with_columns(read.alias("_read"))
    read_rows = decoded.filter("_read").select(
        pl.col("2").alias("key"),
        pl.col("1").alias("metric"),
        pl.col("3").cast(pl.Int64).alias("window"),
        pl.col("4").cast(pl.Int64).alias("time_ms"),
        value.alias("value"),
        "partition",
        "offset",
        "timestamp_ms",
        "_row",
    )
    return read_rows, pl.concat([rest, decoded.filter(~pl.col("_read")).select(frame.columns)])


def decode_outputs(records: pl.DataFrame, spec: PipelineSpec | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(OUTPUTS, QUARANTINE) from records of the output topic (RECORDS frame); never raises on bad records.

    Rows keep the input order. With a ``spec`` whose ``[outputs]`` describes a layout of the team's own, records
    are decoded in that layout (:class:`recovery.records.layout_outputs.OutputLayout`); otherwise they are the
    toolkit's own output records: those in the canonical layout are decoded in bulk, the rest one by one.
    """
    if spec is not None and not spec.outputs.legacy:
        return OutputLayout(spec).decode(records)
    if records.height == 0:
        return empty(OUTPUTS), empty(QUARANTINE)
    frame = conform(records, RECORDS).with_row_index("_row")
    try:
        text = frame.get_column("value").cast(pl.String)
    except pl.exceptions.PolarsError:  # some value is not UTF-8: check those one by one
        text = pl.Series([_utf8_or_none(v) for v in frame.get_column("value")], dtype=pl.String)
    plain, frame = _decode_plain(frame.with_columns(text.alias("text")))
    canonical = frame.get_column("text").str.contains(CANONICAL_RE).fill_null(False)
    fast_rows, slow_rows = frame.filter(canonical), [frame.filter(~canonical)]
    decoded = [plain]
    for start in range(0, fast_rows.height, BULK_CHUNK):
        chunk = fast_rows.slice(start, BULK_CHUNK)
        try:
            decoded.append(_decode_fast(chunk))
        except (pl.exceptions.PolarsError, ValueError, OverflowError):  # e.g. 1e999: the strict path judges
            slow_rows.append(chunk)
    good, bad = _decode_slow(pl.concat(slow_rows))
    outputs = pl.concat([*decoded, good]).sort("_row").drop("_row")
    quarantine = bad.sort("partition", "offset")
    return conform(outputs, OUTPUTS), conform(quarantine, QUARANTINE)


def _utf8_or_none(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None
