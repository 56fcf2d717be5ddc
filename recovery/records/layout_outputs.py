"""Output records in a team's own layout (``[outputs]``): decoding what its job published, and encoding
corrections the same way so downstream needs no new parser.

The toolkit's own output record stays in :mod:`recovery.records.outputs` (bulk-decoded); a layout described
by ``[outputs]`` is decoded record by record here into the same OUTPUTS rows (key, metric, window, time_ms,
value + where it was published). One record may carry several metrics (``metrics = { name = path }``).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import polars as pl

from recovery.formats import KEY_SEPARATOR, OutputsSpec, get_path, has_path, parse_path
from recovery.frames import CORRECTIONS, OUTPUTS, QUARANTINE, RECORDS, conform, empty
from recovery.records.events import decode_value, iso_ms
from recovery.records.reasons import BAD_VALUE, MISSING, NOT_OBJECT, WRONG_TYPE, display_value
from recovery.spec import MetricSpec, PipelineSpec


def _ms(raw: Any, unit: str, path: str) -> int | str:
    """A time field in epoch ms (``unit`` ms, s or iso), or why not."""
    if isinstance(raw, bool) or raw is None:
        return f"{WRONG_TYPE}: {path} must be a time, got {type(raw).__name__}"
    if unit == "iso":
        if not isinstance(raw, str):
            return f"{WRONG_TYPE}: {path} must be an ISO-8601 string, got {type(raw).__name__}"
        return iso_ms(raw, path)
    if not isinstance(raw, int | float):
        return f"{WRONG_TYPE}: {path} must be a number, got {type(raw).__name__}"
    if isinstance(raw, float) and not math.isfinite(raw):
        return f"{BAD_VALUE}: {path} is {raw}"
    ms = raw * 1000 if unit == "s" else raw
    if isinstance(ms, float):
        ms = round(ms)
    if not -(2**62) < ms < 2**62:
        return f"{BAD_VALUE}: {path} does not fit 64 bits"
    return int(ms)


class OutputLayout:
    """Decodes and encodes records of one ``[outputs]`` layout for the metrics of a spec."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.layout: OutputsSpec = spec.outputs
        lay = self.layout
        self.key_paths = [parse_path(p, "") for p in lay.key]
        self.time_path = parse_path(lay.time, "") if lay.time is not None else None
        self.metric_path = parse_path(lay.metric, "") if lay.metric is not None else None
        self.value_path = parse_path(lay.value, "") if lay.value is not None else None
        self.metric_paths = {name: parse_path(path, "") for name, path in lay.metrics.items()}
        self.metrics: dict[str, MetricSpec] = {m.name: m for m in spec.metrics}
        self.start_path = parse_path(lay.window, "") if lay.window is not None else None
        self.end_path = parse_path(lay.window_end, "") if lay.window_end is not None else None
        self.window_paths = {name: parse_path(path, "") for name, path in lay.windows.items()}
        self.has_seq = spec.layout.seq is not None

    def _session_end_offset(self, metric: MetricSpec) -> int:
        """What the layout's session end adds to the session's last event time."""
        if self.layout.session_end == "exclusive":
            return 1
        if self.layout.session_end == "gap":
            return metric.gap_ms or 0
        return 0

    def _result_window(self, data: Any, name: str, metric: MetricSpec | None) -> tuple[int, int | None] | str:
        """(window id, the result's event time if the record says it) of one metric in a record, or why not."""
        lay = self.layout
        unit = lay.window_unit
        kind = metric.window_kind if metric is not None else None
        override = self.window_paths.get(name)
        if override is not None or self.start_path is not None:
            path = override if override is not None else self.start_path
            label = lay.windows.get(name) or lay.window or ""
            assert path is not None
            raw = get_path(data, path)
            if raw is None:
                return f"{MISSING}: {label}"
            if kind == "count":
                if self.has_seq:
                    # a count window is named by its seq (an integer) whatever the unit of time fields
                    if isinstance(raw, int) and not isinstance(raw, bool):
                        return raw, None
                    return f"{WRONG_TYPE}: {label} must be an integer (the seq), got {type(raw).__name__}"
                found = _ms(raw, unit, label)  # without a seq, a count window is named by its event's time
                return found if isinstance(found, str) else (found, found)
            start = _ms(raw, unit, label)
            if isinstance(start, str):
                return start
            if kind == "session" and self.end_path is not None and override is None:
                end = _ms(get_path(data, self.end_path), unit, lay.window_end or "")
                if isinstance(end, str):
                    return end
                assert metric is not None
                return start, end - self._session_end_offset(metric)
            return start, None
        assert self.end_path is not None
        end = _ms(get_path(data, self.end_path), unit, lay.window_end or "")
        if isinstance(end, str):
            return end
        if metric is None or not metric.is_windowed:
            return f"{BAD_VALUE}: window_end alone names only tumbling or hopping windows"
        return end - metric.size, None

    def decode_object(self, data: Any, timestamp_ms: int) -> list[dict[str, Any]] | str:
        """The results one decoded record holds, or why it holds none."""
        if not isinstance(data, dict):
            return f"{NOT_OBJECT}: got {type(data).__name__}"
        parts = [get_path(data, p) for p in self.key_paths]
        absent = [path for path, part in zip(self.layout.key, parts, strict=True) if part is None]
        if absent:
            return f"{MISSING}: {', '.join(absent)}"
        for path, part in zip(self.layout.key, parts, strict=True):
            if not (isinstance(part, str) or isinstance(part, int) and not isinstance(part, bool)):
                return f"{WRONG_TYPE}: {path} must be a string or an integer, got {type(part).__name__}"
        key = KEY_SEPARATOR.join(str(p) for p in parts)
        if self.metric_path is not None:
            name = get_path(data, self.metric_path)
            if not isinstance(name, str) or not name:
                return f"{WRONG_TYPE}: {self.layout.metric} must name a metric"
            assert self.value_path is not None
            pairs = [(name, get_path(data, self.value_path))]
        else:
            # a record may carry only some of the metrics (a correction of one of them): absent is not null
            pairs = [(name, get_path(data, path)) for name, path in self.metric_paths.items() if has_path(data, path)]
        rows = []
        if not pairs:
            return f"{MISSING}: no metric field ({', '.join(self.layout.metrics.values())})"
        for name, raw_value in pairs:
            metric = self.metrics.get(name)
            found = self._result_window(data, name, metric)
            if isinstance(found, str):
                return found
            window, said_time = found
            if raw_value is not None:
                if isinstance(raw_value, bool) or not isinstance(raw_value, int | float):
                    return f"{WRONG_TYPE}: the value of {name} must be a number or null"
                raw_value = float(raw_value)
                if not math.isfinite(raw_value):
                    return f"{BAD_VALUE}: the value of {name} is {raw_value}"
            if self.time_path is not None:
                when = _ms(get_path(data, self.time_path), self.layout.window_unit, self.layout.time or "")
                if isinstance(when, str):
                    return when
            elif said_time is not None:
                when = said_time
            elif metric is not None and metric.window_kind == "count":
                when = timestamp_ms
            else:
                when = window
            rows.append({"key": key, "metric": name, "window": window, "time_ms": when, "value": raw_value})
        return rows

    def decode(self, records: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(OUTPUTS, QUARANTINE) of output records in this layout, in record order; never raises on bad records."""
        if records.height == 0:
            return empty(OUTPUTS), empty(QUARANTINE)
        good: list[dict[str, Any]] = []
        bad: list[tuple[Any, ...]] = []
        for partition, offset, ts, key, value in conform(records, RECORDS).iter_rows():
            data = decode_value(value, self.layout.avro)
            found = data if isinstance(data, str) else self.decode_object(data, ts)
            if isinstance(found, str):
                bad.append((partition, offset, ts, display_value(key), display_value(value), found))
                continue
            for row in found:
                good.append({**row, "partition": partition, "offset": offset, "timestamp_ms": ts})
        outputs = pl.DataFrame(good, schema=OUTPUTS) if good else empty(OUTPUTS)
        return outputs, pl.DataFrame(bad, schema=QUARANTINE, orient="row")

    def _serialise(self, doc: dict[str, Any]) -> bytes:
        avro = self.layout.avro
        if avro is None:
            return json.dumps(doc, separators=(",", ":")).encode()
        assert self.layout.corrections_schema_id is not None
        from recovery.records.avro import codec_for  # fastavro and the registry client: only for Avro values

        codec = codec_for(avro.registry_url, avro.schema_files, avro.reader_schema)
        return codec.encode(doc, self.layout.corrections_schema_id)

    def encode(self, corrections: pl.DataFrame) -> list[tuple[bytes, bytes | None]]:
        """(record key, value) per correction in this layout; a retraction is a tombstone or a flagged record.

        Records that carry several metrics are written with only the corrected metric's field set.
        """
        out: list[tuple[bytes, bytes | None]] = []
        lay = self.layout
        for key, metric, window, time_ms, action, value, _reason in conform(corrections, CORRECTIONS).iter_rows():
            record_key = key.encode()
            if action == "retract" and lay.retraction == "tombstone":
                out.append((record_key, None))
                continue
            doc: dict[str, Any] = {}
            parts = key.split(KEY_SEPARATOR, len(self.key_paths) - 1)
            for path, part in zip(self.key_paths, parts, strict=False):
                _put(doc, path, part)
            self._put_window(doc, metric, window, time_ms)
            if self.time_path is not None:
                _put(doc, self.time_path, _time_out(time_ms, lay.window_unit))
            if self.metric_path is not None:
                assert self.value_path is not None
                _put(doc, self.metric_path, metric)
                _put(doc, self.value_path, value)
            else:
                _put(doc, self.metric_paths[metric], value)
            if action == "retract":
                _put(doc, parse_path(lay.retraction_flag, ""), True)
            out.append((record_key, self._serialise(doc)))
        return out

    def _put_window(self, doc: dict[str, Any], name: str, window: int, time_ms: int) -> None:
        """Write a result's window (start, end, or the path ``windows`` names for its metric) into ``doc``."""
        unit = self.layout.window_unit
        metric = self.metrics.get(name)
        kind = metric.window_kind if metric is not None else None
        override = self.window_paths.get(name)
        if kind == "count":
            path = override if override is not None else self.start_path
            assert path is not None
            _put(doc, path, window if self.has_seq else _time_out(window, unit))
            return
        if override is not None:
            _put(doc, override, _time_out(window, unit))
            return
        if self.start_path is not None:
            _put(doc, self.start_path, _time_out(window, unit))
        if self.end_path is not None and metric is not None:
            if kind == "session":
                _put(doc, self.end_path, _time_out(time_ms + self._session_end_offset(metric), unit))
            elif metric.is_windowed:
                _put(doc, self.end_path, _time_out(window + metric.size, unit))


def _time_out(ms: int, unit: str) -> Any:
    """A time in epoch ms written in ``unit``."""
    if unit == "iso":
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if unit == "s":
        return ms // 1000 if ms % 1000 == 0 else ms / 1000
    return ms


def _put(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        doc = doc.setdefault(part, {})
    doc[path[-1]] = value


# What a correction written in the outputs' layout reads back as (the digest is not in the record).
LAYOUT_CORRECTIONS = pl.Schema(
    [*CORRECTIONS.items(), ("record_key", pl.String), ("partition", pl.Int32), ("offset", pl.Int64)]
)


def split_record_key(record_key: str) -> tuple[str, str, int] | None:
    """(key, metric, window) of a correction's record key ``key|metric|window`` (the key may hold ``|``)."""
    parts = record_key.rsplit("|", 2)
    if len(parts) != 3:
        return None
    try:
        return parts[0], parts[1], int(parts[2])
    except ValueError:
        return None


def decode_layout_corrections(layout: OutputLayout, records: pl.DataFrame) -> pl.DataFrame:
    """Corrections written in ``layout`` read back from the corrections topic: a tombstone or a flagged record
    is a retraction; records whose key is not ``key|metric|window`` are not corrections and are skipped."""
    flag = parse_path(layout.layout.retraction_flag, "")
    rows: list[dict[str, Any]] = []
    for partition, offset, ts, key, value in conform(records, RECORDS).iter_rows():
        record_key = key.decode("utf-8", "replace") if key is not None else ""
        named = split_record_key(record_key)
        if named is None:
            continue
        where = {"record_key": record_key, "partition": partition, "offset": offset, "reason": None}
        if value is None:
            rows.append(
                {"key": named[0], "metric": named[1], "window": named[2], "time_ms": named[2], "action": "retract"}
                | {"value": None, **where}
            )
            continue
        data = decode_value(value, layout.layout.avro)
        found = data if isinstance(data, str) else layout.decode_object(data, ts)
        if isinstance(found, str):
            continue
        retract = isinstance(data, dict) and get_path(data, flag) is True
        for row in found:
            if row["metric"] == named[1]:  # a record carrying several metrics corrects the one its key names
                rows.append({**row, "action": "retract" if retract else "upsert", **where})
    return pl.DataFrame(rows, schema=LAYOUT_CORRECTIONS) if rows else empty(LAYOUT_CORRECTIONS)
