"""A team's own record layouts: ``[events]`` (what the raw topic holds) and ``[outputs]`` (what its job publishes).

Both are parsed and checked when the spec is loaded (:mod:`recovery.spec`). Fields are named by *paths*: a
dotted path reaches into nested objects (``"device.id"``); a field whose own name holds a dot is quoted with
brackets (``"['a.b']"``). Inside the toolkit events and results always have the canonical columns of
:mod:`recovery.frames`; these layouts say where each canonical column comes from.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from recovery.errors import SpecError

FORMATS: tuple[str, ...] = ("json", "avro")
TIME_UNITS: tuple[str, ...] = ("ms", "s", "iso")
TIME_FROM: tuple[str, ...] = ("field", "kafka")
KEY_SEPARATOR = "|"  # joins the parts of a composite key, in the order the spec lists them
COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = frozenset({"partition", "offset", "timestamp_ms", "event_id", "key", "seq", "ts"})
_PART_RE = re.compile(r"\['((?:[^'\\]|\\.)*)'\]|([^.\[\]]+)")


@functools.lru_cache(maxsize=4096)
def parse_path(path: str, where: str) -> tuple[str, ...]:
    """The segments of a field path (``"a.b"`` -> ``("a", "b")``, ``"['a.b']"`` -> ``("a.b",)``); cached, since
    per-record decoders look the same few paths up for every record."""
    if not isinstance(path, str) or not path:
        raise SpecError(f"{where}: a field path must be a non-empty string, got {path!r}")
    parts: list[str] = []
    pos = 0
    while pos < len(path):
        m = _PART_RE.match(path, pos)
        if m is None:
            raise SpecError(f"{where}: cannot read field path {path!r} at char {pos}", hint='use "a.b" or "[\'a.b\']"')
        parts.append(m.group(1).replace("\\'", "'") if m.group(1) is not None else m.group(2))
        pos = m.end()
        if pos < len(path):
            if path[pos] == ".":
                pos += 1
                if pos == len(path):
                    raise SpecError(f"{where}: field path {path!r} ends with a dot")
            elif path[pos] != "[":
                raise SpecError(f"{where}: cannot read field path {path!r} at char {pos}")
    return tuple(parts)


def get_path(data: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in nested dicts, or None when a step is missing or not an object."""
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def has_path(data: Any, path: tuple[str, ...]) -> bool:
    """True when every step of ``path`` exists in nested dicts (its value may be null)."""
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _paths(value: Any, where: str) -> tuple[str, ...]:
    """One path or a non-empty list of paths, as a tuple of path strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise SpecError(f"{where} must be a field path or a non-empty list of paths, got {value!r}")
    for item in items:
        parse_path(item, where)
    if len(set(items)) != len(items):
        raise SpecError(f"{where} lists a path twice: {list(items)}")
    return tuple(items)


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(
            f"unknown key(s) {', '.join(unknown)} in {where}", hint=f"allowed: {', '.join(sorted(allowed))}"
        )


@dataclass(frozen=True)
class AvroSource:
    """Where Avro schemas come from: a Schema Registry URL and/or local ``.avsc`` files by schema id."""

    registry_url: str | None = None
    schema_files: dict[int, str] = field(default_factory=dict)  # schema id -> path of an .avsc file
    reader_schema: str | None = None  # one .avsc used for every schema id not listed

    def __post_init__(self) -> None:
        if self.registry_url is None and not self.schema_files and self.reader_schema is None:
            raise SpecError(
                'format = "avro" needs a schema source',
                hint='set schema_registry = "http://host:8081", schemas = { 1 = "a.avsc" } or schema = "a.avsc"',
            )
        if self.registry_url is not None and not re.match(r"^https?://", self.registry_url):
            raise SpecError(f"schema_registry must be an http(s) URL, got {self.registry_url!r}")

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str) -> AvroSource:
        files: dict[int, str] = {}
        for sid, path in dict(table.get("schemas", {})).items():
            try:
                files[int(sid)] = str(path)
            except ValueError:
                raise SpecError(f"{where}: schemas keys are schema ids (integers), got {sid!r}") from None
        return cls(table.get("schema_registry"), files, table.get("schema"))

    def to_table(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.registry_url is not None:
            out["schema_registry"] = self.registry_url
        if self.schema_files:
            out["schemas"] = {str(k): v for k, v in sorted(self.schema_files.items())}
        if self.reader_schema is not None:
            out["schema"] = self.reader_schema
        return out


_AVRO_KEYS = {"schema_registry", "schemas", "schema"}


@dataclass(frozen=True)
class EventsSpec:
    """The raw events' layout: format, where key, event time, seq, id and the values are."""

    format: Literal["json", "avro"] = "json"
    key: tuple[str, ...] = ("symbol",)  # one path, or several (composite key joined by KEY_SEPARATOR)
    time: str | None = "ts"  # path of the event time (None when time_from = "kafka")
    time_unit: str = "ms"  # ms | s | iso
    time_from: str = "field"  # field | kafka (the record's Kafka timestamp is the event time)
    seq: str | None = "seq"  # per-key sequence number from 1; None: no gap detection
    id: str | None = "event_id"  # unique per event; None: an event is identified by its value's content hash
    values: dict[str, str] = field(default_factory=lambda: {"price": "price", "volume": "volume"})
    non_negative: tuple[str, ...] = ()  # value columns that must be >= 0
    avro: AvroSource | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise SpecError(f"[events] format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if (self.format == "avro") != (self.avro is not None):
            raise SpecError('[events] schema settings (schema_registry, schemas, schema) go with format = "avro" only')
        if self.time_from not in TIME_FROM:
            raise SpecError(f"[events] time_from must be one of {', '.join(TIME_FROM)}, got {self.time_from!r}")
        if self.time_from == "field":
            if self.time is None:
                raise SpecError('[events] needs time = <field path> (or time_from = "kafka")')
            parse_path(self.time, "[events] time")
            if self.time_unit not in TIME_UNITS:
                raise SpecError(f"[events] time_unit must be one of {', '.join(TIME_UNITS)}, got {self.time_unit!r}")
        elif self.time is not None:
            raise SpecError('[events] time_from = "kafka" takes no time field')
        object.__setattr__(self, "key", _paths(self.key, "[events] key"))
        for name in ("seq", "id"):
            if getattr(self, name) is not None:
                parse_path(getattr(self, name), f"[events] {name}")
        if not isinstance(self.values, dict) or not self.values:
            raise SpecError(
                "[events] values must map at least one column name to a field path",
                hint='values = { amount = "amount" }',
            )
        for column, path in self.values.items():
            if not COLUMN_RE.match(column) or column in RESERVED:
                raise SpecError(
                    f"[events] values: {column!r} cannot name a value column",
                    hint=f"use a plain identifier other than {', '.join(sorted(RESERVED))}",
                )
            parse_path(path, f"[events] values.{column}")
        unknown = [c for c in self.non_negative if c not in self.values]
        if unknown:
            raise SpecError(f"[events] non_negative names unknown value column(s) {', '.join(unknown)}")

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> EventsSpec:
        """From the ``[events]`` TOML table (unknown keys refused)."""
        allowed = {
            "format",
            "key",
            "time",
            "time_unit",
            "time_from",
            "seq",
            "id",
            "values",
            "non_negative",
            *_AVRO_KEYS,
        }
        _check_keys(table, allowed, "[events]")
        fmt = table.get("format", "json")
        avro = AvroSource.from_table(table, "[events]") if fmt == "avro" or _AVRO_KEYS & set(table) else None
        time_from = table.get("time_from", "field")
        return cls(
            format=fmt,
            key=table.get("key", "key"),
            time=table.get("time", "ts" if time_from == "field" else None),
            time_unit=table.get("time_unit", "ms"),
            time_from=time_from,
            seq=table.get("seq"),
            id=table.get("id"),
            values=dict(table.get("values", {})),
            non_negative=tuple(table.get("non_negative", ())),
            avro=avro,
        )

    def to_table(self) -> dict[str, Any]:
        """The ``[events]`` table (``from_table(to_table())`` round-trips)."""
        out: dict[str, Any] = {"format": self.format, "key": list(self.key), "time_from": self.time_from}
        if self.time_from == "field":
            out.update(time=self.time, time_unit=self.time_unit)
        for name in ("seq", "id"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out["values"] = dict(self.values)
        if self.non_negative:
            out["non_negative"] = list(self.non_negative)
        if self.avro is not None:
            out.update(self.avro.to_table())
        return out

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(self.values)

    @property
    def is_flat_legacy(self) -> bool:
        """The layout of the toolkit's own tick events (a flat JSON object, every field present, times in ms),
        which the bulk validator handles."""
        flat = [self.time, self.seq, self.id, *self.key, *self.values.values()]
        return (
            self.format == "json"
            and self.time_from == "field"
            and self.time_unit == "ms"
            and self.seq is not None
            and self.id is not None
            and len(self.key) == 1
            and set(self.values) == {"price", "volume"}
            and set(self.non_negative) == {"price", "volume"}
            and all(p is not None and len(parse_path(p, "")) == 1 for p in flat)
        )


EMITS: tuple[str, ...] = ("final", "updates")
CORRECTION_FORMATS: tuple[str, ...] = ("layout", "record")
RETRACTIONS: tuple[str, ...] = ("tombstone", "flag")
SESSION_ENDS: tuple[str, ...] = ("last", "exclusive", "gap")


@dataclass(frozen=True)
class OutputsSpec:
    """The output topic's layout: where a record holds the key, the window, the metric and the value(s).

    Either ``metric`` names a field holding the metric's name and ``value`` the field holding its value (one
    metric per record: the toolkit's own layout), or ``metrics`` maps metric names to the fields that hold
    their values (one record carries several metrics). ``window`` holds the window id (a time window's start,
    a count window's seq); ``window_end`` holds a time window's end (exclusive) or a session's end (see
    ``session_end``); a record may hold both. ``windows`` names another window path for some metrics (records
    of a count window and of a session on one topic, keyed differently).
    """

    format: Literal["json", "avro"] = "json"
    key: tuple[str, ...] = ("key",)
    window: str | None = "window"
    window_end: str | None = None
    window_unit: str = "ms"  # ms | s | iso, for window, window_end and time
    time: str | None = "time_ms"  # the result's event time (count windows); default: the window start
    metric: str | None = "metric"
    value: str | None = "value"
    metrics: dict[str, str] = field(default_factory=dict)  # metric name -> field path of its value
    emit: str = "final"  # final: one record per window; updates: the latest record of a window is its result
    corrections: str = "record"  # layout: corrections in this layout; record: the toolkit's correction record
    retraction: str = "tombstone"  # tombstone (null value) | flag (a record with retraction_flag = true)
    retraction_flag: str = "retracted"
    avro: AvroSource | None = None
    corrections_schema_id: int | None = None  # Avro: the schema id corrections in this layout are written with
    legacy: bool = True  # the toolkit's own output record (the default when the spec has no [outputs])
    windows: dict[str, str] = field(default_factory=dict)  # metric name -> path of its window id
    session_end: str = "last"  # window_end of a session: last event (Kafka Streams), + 1 ms (Quix), + gap (Flink)
    lookback_ms: int = 0  # results in a range may be stamped up to this long before it (read the outputs earlier)

    def __post_init__(self) -> None:
        where = "[outputs]"
        if self.format not in FORMATS:
            raise SpecError(f"{where} format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if (self.format == "avro") != (self.avro is not None):
            raise SpecError(f'{where} schema settings go with format = "avro" only')
        object.__setattr__(self, "key", _paths(self.key, f"{where} key"))
        if self.window is None and self.window_end is None:
            raise SpecError(f"{where} needs window (the window start or seq), window_end, or both")
        if not isinstance(self.windows, dict):
            raise SpecError(f"{where} windows must map metric names to field paths, got {self.windows!r}")
        for name, path in self.windows.items():
            parse_path(path, f"{where} windows.{name}")
        if isinstance(self.lookback_ms, bool) or not isinstance(self.lookback_ms, int) or self.lookback_ms < 0:
            raise SpecError(f"{where} lookback_ms must be an integer >= 0, got {self.lookback_ms!r}")
        if self.session_end not in SESSION_ENDS:
            raise SpecError(
                f"{where} session_end must be one of {', '.join(SESSION_ENDS)}, got {self.session_end!r}",
                hint="last: the last event's time (Kafka Streams); exclusive: last + 1 ms (Quix Streams); "
                "gap: last + gap_ms (Flink)",
            )
        if self.window_unit not in TIME_UNITS:
            raise SpecError(f"{where} window_unit must be one of {', '.join(TIME_UNITS)}, got {self.window_unit!r}")
        for name in ("window", "window_end", "time", "metric", "value"):
            if getattr(self, name) is not None:
                parse_path(getattr(self, name), f"{where} {name}")
        if self.metrics:
            if self.metric is not None or self.value is not None:
                raise SpecError(f"{where}: use either metric + value (one metric per record) or metrics, not both")
            for name, path in self.metrics.items():
                parse_path(path, f"{where} metrics.{name}")
        elif self.metric is None or self.value is None:
            raise SpecError(
                f"{where} needs metric and value (field paths), or metrics = {{ name = path, ... }}",
                hint='e.g. metric = "metric", value = "value"',
            )
        for name, allowed in (("emit", EMITS), ("corrections", CORRECTION_FORMATS), ("retraction", RETRACTIONS)):
            if getattr(self, name) not in allowed:
                raise SpecError(f"{where} {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        parse_path(self.retraction_flag, f"{where} retraction_flag")
        if self.format == "avro" and self.corrections == "layout" and self.corrections_schema_id is None:
            raise SpecError(
                f"{where}: corrections in an Avro layout need the schema id to write them with",
                hint='set corrections_schema_id = N (a schema of the output topic), or corrections = "record"',
            )

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> OutputsSpec:
        """From the ``[outputs]`` TOML table (unknown keys refused)."""
        simple = {"format", "key", "window", "window_end", "window_unit", "time", "metric", "value", "metrics"}
        simple |= {"emit", "corrections", "retraction", "retraction_flag", "windows", "session_end"}
        simple |= {"lookback_ms", "corrections_schema_id"}
        _check_keys(table, simple | _AVRO_KEYS, "[outputs]")
        fmt = table.get("format", "json")
        avro = AvroSource.from_table(table, "[outputs]") if fmt == "avro" or _AVRO_KEYS & set(table) else None
        several = "metrics" in table
        return cls(
            format=fmt,
            key=table.get("key", "key"),
            window=table.get("window", None if "window_end" in table else "window"),
            window_end=table.get("window_end"),
            window_unit=table.get("window_unit", "ms"),
            time=table.get("time"),
            metric=table.get("metric", None if several else "metric"),
            value=table.get("value", None if several else "value"),
            metrics=dict(table.get("metrics", {})),
            emit=table.get("emit", "final"),
            corrections=table.get("corrections", "layout"),
            retraction=table.get("retraction", "tombstone"),
            retraction_flag=table.get("retraction_flag", "retracted"),
            avro=avro,
            corrections_schema_id=table.get("corrections_schema_id"),
            legacy=False,
            windows=dict(table.get("windows", {})),
            session_end=table.get("session_end", "last"),
            lookback_ms=table.get("lookback_ms", 0),
        )

    def to_table(self) -> dict[str, Any]:
        """The ``[outputs]`` table (``from_table(to_table())`` round-trips)."""
        out: dict[str, Any] = {"format": self.format, "key": list(self.key), "window_unit": self.window_unit}
        for name in ("window", "window_end", "time", "metric", "value"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.metrics:
            out["metrics"] = dict(self.metrics)
        if self.windows:
            out["windows"] = dict(self.windows)
        if self.session_end != "last":
            out["session_end"] = self.session_end
        if self.lookback_ms:
            out["lookback_ms"] = self.lookback_ms
        out.update(emit=self.emit, corrections=self.corrections, retraction=self.retraction)
        if self.retraction == "flag":
            out["retraction_flag"] = self.retraction_flag
        if self.avro is not None:
            out.update(self.avro.to_table())
        if self.corrections_schema_id is not None:
            out["corrections_schema_id"] = self.corrections_schema_id
        return out
