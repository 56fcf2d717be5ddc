"""The pipeline spec (``pipeline.toml``): topics, event fields and metrics, validated when loaded.

The live worker and the recompute both take a :class:`PipelineSpec`, so they compute the same metrics
from the same fields. Inside the toolkit events always use the canonical column names of
:mod:`recovery.frames` (``event_id``, ``key``, ``seq``, ``ts``, ``price``, ``volume``); the spec's
``[fields]`` table maps the event's JSON names onto them.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from recovery.errors import SpecError
from recovery.formats import EventsSpec, OutputsSpec

MetricKind = Literal["sma", "mean", "vwap"]
METRIC_KINDS: tuple[str, ...] = ("sma", "mean", "vwap")
VALUE_FIELDS: tuple[str, ...] = ("price", "volume")
AGGREGATIONS: tuple[str, ...] = ("count", "sum", "mean", "min", "max", "first", "last", "stddev", "weighted_mean")
WINDOW_KINDS: tuple[str, ...] = ("count", "tumbling", "hopping", "session")
DAY_MS = 86_400_000
# The legacy kinds on the general model: kind -> (aggregation, weight column).
_LEGACY = {"sma": ("mean", None), "mean": ("mean", None), "vwap": ("weighted_mean", "volume")}


def _check_keys(table: dict[str, Any], allowed: set[str], where: str, path: str | None) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(
            f"unknown key(s) {', '.join(unknown)} in {where}", path=path, hint=f"allowed: {', '.join(sorted(allowed))}"
        )


@dataclass(frozen=True)
class TopicsSpec:
    """Topic names of the pipeline and of the toolkit's own outputs."""

    raw: str = "ticks"
    output: str = "ticks.sma"
    corrections: str = "ticks.sma.corrections"
    audit: str = "recovery.audit"
    partitions: int = 6

    def __post_init__(self) -> None:
        for name in ("raw", "output", "corrections", "audit"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > 249:
                raise SpecError(f"topics.{name} must be a non-empty topic name, got {value!r}")
        if len({self.raw, self.output, self.corrections, self.audit}) != 4:
            raise SpecError("topics.raw, output, corrections and audit must be four different topics")
        if not isinstance(self.partitions, int) or self.partitions < 1:
            raise SpecError(f"topics.partitions must be an integer >= 1, got {self.partitions!r}")


def _quoted(name: str) -> str:
    """A plain field name as a field path (bracket-quoted when it holds a dot or a bracket)."""
    if "." in name or "[" in name or "]" in name:
        return "['" + name.replace("'", "\\'") + "']"
    return name


@dataclass(frozen=True)
class FieldsSpec:
    """JSON field names of a raw event, mapped onto the canonical columns."""

    id: str = "event_id"
    key: str = "symbol"
    time: str = "ts"
    seq: str = "seq"
    price: str = "price"
    volume: str = "volume"

    def __post_init__(self) -> None:
        names = [getattr(self, n) for n in ("id", "key", "time", "seq", "price", "volume")]
        if not all(isinstance(n, str) and n for n in names):
            raise SpecError("every [fields] entry must be a non-empty string")
        if len(set(names)) != len(names):
            raise SpecError(f"[fields] maps two columns onto the same JSON field: {names}")

    def events(self) -> EventsSpec:
        """The same layout as an ``[events]`` table: flat JSON, times in ms, price and volume >= 0."""
        return EventsSpec(
            format="json",
            key=(_quoted(self.key),),
            time=_quoted(self.time),
            seq=_quoted(self.seq),
            id=_quoted(self.id),
            values={"price": _quoted(self.price), "volume": _quoted(self.volume)},
            non_negative=("price", "volume"),
        )

    def json_to_canonical(self) -> dict[str, str]:
        """JSON field name -> canonical column name."""
        return {
            self.id: "event_id",
            self.key: "key",
            self.time: "ts",
            self.seq: "seq",
            self.price: "price",
            self.volume: "volume",
        }


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True)
class MetricSpec:
    """One metric: an aggregation of a value column over a window kind, per key.

    ``aggregation`` (count, sum, mean, min, max, first, last, stddev, weighted_mean of ``field`` weighted by
    ``weight``) or ``function = "module:name"`` (a user-defined metric), over ``window``: ``count`` (the
    last ``n`` events, one result per event), ``tumbling`` / ``hopping`` (``size_ms``, ``hop_ms``, aligned
    to ``offset_ms`` after the epoch, or to local midnights with ``time_zone``) or ``session`` (``gap_ms``
    of inactivity). Time windows close when the watermark (max event time - ``grace_ms``) reaches their end.

    The legacy kinds stay as they are written: ``kind = "sma"`` (``n``) is a mean over a count window;
    ``kind = "mean"`` / ``"vwap"`` (``window_ms``, ``hop_ms``) a mean / a weighted mean by ``volume`` over
    epoch-aligned windows ``[start, start + window_ms)``. docs/semantics.md states every edge.
    """

    name: str
    kind: MetricKind | None = None
    field: str = ""
    n: int | None = None
    window_ms: int | None = None
    hop_ms: int | None = None
    grace_ms: int = 0
    aggregation: str | None = None
    weight: str | None = None
    window: str | None = None
    size_ms: int | None = None
    gap_ms: int | None = None
    offset_ms: int | None = None
    time_zone: str | None = None
    function: str | None = None
    partial: bool | None = None  # count windows: False = results only once n events are in the window

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "|" in self.name:
            raise SpecError(f"metric names must be non-empty and without '|', got {self.name!r}")
        if self.kind is not None:
            self._check_legacy()
        else:
            self._check_general()
        if not _is_int(self.grace_ms, 0):
            raise SpecError(f"metric {self.name!r}: grace_ms must be >= 0, got {self.grace_ms!r}")

    def _fail(self, message: str, hint: str | None = None) -> SpecError:
        return SpecError(f"metric {self.name!r}: {message}", hint=hint)

    def _check_legacy(self) -> None:
        where = f"metric {self.name!r}"
        if self.kind not in METRIC_KINDS:
            raise SpecError(f"{where}: unknown kind {self.kind!r}", hint=f"use one of {', '.join(METRIC_KINDS)}")
        new = [
            k
            for k in (
                "aggregation",
                "weight",
                "window",
                "size_ms",
                "gap_ms",
                "offset_ms",
                "time_zone",
                "function",
                "partial",
            )
            if getattr(self, k) is not None
        ]
        if new:
            raise self._fail(
                f"kind = {self.kind!r} is the legacy form; {', '.join(new)} belong to the aggregation form",
                hint="drop kind and write aggregation + window (docs/semantics.md)",
            )
        if not self.field:
            object.__setattr__(self, "field", "price")
        if self.kind == "sma":
            if not _is_int(self.n, 1):
                raise SpecError(f"{where}: sma needs n >= 1 (events in the window), got {self.n!r}")
            if self.window_ms is not None or self.hop_ms is not None or self.grace_ms:
                raise SpecError(f"{where}: sma is count-based; window_ms, hop_ms and grace_ms do not apply")
            return
        if self.n is not None:
            raise SpecError(f"{where}: n applies to sma only; {self.kind} uses window_ms")
        if not _is_int(self.window_ms, 1):
            raise SpecError(f"{where}: {self.kind} needs window_ms >= 1, got {self.window_ms!r}")
        if self.hop_ms is None:
            object.__setattr__(self, "hop_ms", self.window_ms)
        assert self.hop_ms is not None and self.window_ms is not None
        if not _is_int(self.hop_ms, 1):
            raise SpecError(f"{where}: hop_ms must be >= 1, got {self.hop_ms!r}")
        if self.hop_ms > self.window_ms:
            raise SpecError(f"{where}: hop_ms ({self.hop_ms}) > window_ms ({self.window_ms}) would leave gaps")

    def _check_general(self) -> None:
        if self.window_ms is not None:
            raise self._fail("window_ms belongs to the legacy kinds", hint="write size_ms with window = ...")
        if self.function is not None:
            if self.aggregation is not None:
                raise self._fail("give an aggregation or a function, not both")
            module, _, attr = self.function.partition(":") if isinstance(self.function, str) else ("", "", "")
            if not module or not attr:
                raise self._fail(f"function must be 'module:name', got {self.function!r}")
            if self.window == "count":
                raise self._fail(
                    "a function runs per key or per time window, not over count windows",
                    hint="leave window out: the function gets each key's events and returns its results",
                )
        elif self.aggregation is None:
            raise self._fail(
                "needs an aggregation or a function", hint=f"aggregation = one of {', '.join(AGGREGATIONS)}"
            )
        elif self.aggregation not in AGGREGATIONS:
            raise self._fail(f"unknown aggregation {self.aggregation!r}", hint=f"use one of {', '.join(AGGREGATIONS)}")
        self._check_fields()
        if self.partial is not None and (self.window != "count" or not isinstance(self.partial, bool)):
            raise self._fail(
                f"partial applies to count windows only and is true or false, got {self.partial!r}",
                hint="partial = false: a count window emits only once it holds n events (Quix Streams, Flink)",
            )
        if self.window is None:
            if self.function is None:
                raise self._fail("needs a window", hint=f"window = one of {', '.join(WINDOW_KINDS)}")
            self._refuse(
                "n",
                "size_ms",
                "hop_ms",
                "gap_ms",
                "offset_ms",
                "time_zone",
                "grace_ms",
                why="a function without a window gets all of a key's events",
            )
            return
        if self.window not in WINDOW_KINDS:
            raise self._fail(f"unknown window {self.window!r}", hint=f"use one of {', '.join(WINDOW_KINDS)}")
        if self.window == "count":
            if not _is_int(self.n, 1):
                raise self._fail(f"a count window needs n >= 1 (events in the window), got {self.n!r}")
            self._refuse(
                "size_ms",
                "hop_ms",
                "gap_ms",
                "offset_ms",
                "time_zone",
                "grace_ms",
                why="a count window is the last n events of a key",
            )
        elif self.window == "session":
            if not _is_int(self.gap_ms, 1):
                raise self._fail(f"a session window needs gap_ms >= 1 (the inactivity gap), got {self.gap_ms!r}")
            self._refuse(
                "n", "size_ms", "hop_ms", "offset_ms", "time_zone", why="a session ends after gap_ms of inactivity"
            )
        else:
            self._check_time_window()

    def _check_fields(self) -> None:
        needs_field = self.function is None and self.aggregation != "count"
        if needs_field and (not isinstance(self.field, str) or not self.field):
            raise self._fail(f"{self.aggregation} needs field = the value column it aggregates")
        if self.aggregation == "weighted_mean":
            if not isinstance(self.weight, str) or not self.weight:
                raise self._fail("weighted_mean needs weight = the column weighting field (VWAP: volume)")
        elif self.weight is not None:
            raise self._fail("weight applies to weighted_mean only")

    def _check_time_window(self) -> None:
        if not _is_int(self.size_ms, 1):
            raise self._fail(f"a {self.window} window needs size_ms >= 1, got {self.size_ms!r}")
        assert self.size_ms is not None
        self._refuse("n", "gap_ms", why=f"a {self.window} window is sized by size_ms")
        if self.window == "tumbling" and self.hop_ms is not None:
            raise self._fail("a tumbling window has no hop_ms", hint="use window = 'hopping' to overlap windows")
        if self.window == "hopping":
            if not _is_int(self.hop_ms, 1):
                raise self._fail(f"a hopping window needs hop_ms >= 1, got {self.hop_ms!r}")
            assert self.hop_ms is not None
            if self.hop_ms > self.size_ms:
                raise self._fail(f"hop_ms ({self.hop_ms}) > size_ms ({self.size_ms}) would leave gaps")
        hop = self.hop
        if self.offset_ms is not None and not (_is_int(self.offset_ms, 0) and self.offset_ms < hop):
            raise self._fail(f"offset_ms must be in [0, {hop}) (one hop), got {self.offset_ms!r}")
        if self.time_zone is not None:
            try:
                ZoneInfo(self.time_zone)
            except (ZoneInfoNotFoundError, ValueError, TypeError):
                raise self._fail(
                    f"unknown time_zone {self.time_zone!r}", hint="an IANA name such as 'Europe/Paris'"
                ) from None
            for key in ("size_ms", "hop_ms", "offset_ms"):
                value = getattr(self, key)
                if value is not None and value % DAY_MS:
                    raise self._fail(
                        f"with a time_zone, {key} must be whole days ({DAY_MS} ms), got {value}",
                        hint="calendar windows run local midnight to midnight; leave time_zone out for other sizes",
                    )

    def _refuse(self, *keys: str, why: str) -> None:
        given = [k for k in keys if (getattr(self, k) != 0 if k == "grace_ms" else getattr(self, k) is not None)]
        if given:
            raise self._fail(f"{', '.join(given)} do(es) not apply: {why}")

    # -- the metric on the general model (legacy kinds mapped onto it) --------------------------------------

    @property
    def is_legacy(self) -> bool:
        """Written with ``kind`` (sma, mean, vwap)."""
        return self.kind is not None

    @property
    def agg(self) -> str:
        """The aggregation: one of AGGREGATIONS, or ``function``."""
        if self.kind is not None:
            return _LEGACY[self.kind][0]
        return self.aggregation if self.aggregation is not None else "function"

    @property
    def weight_field(self) -> str | None:
        """The weight column of a weighted mean (``volume`` for vwap)."""
        return _LEGACY[self.kind][1] if self.kind is not None else self.weight

    @property
    def window_kind(self) -> str | None:
        """count, tumbling, hopping, session, or None (a function over all of a key's events)."""
        if self.kind == "sma":
            return "count"
        if self.kind is not None:
            return "tumbling" if self.hop_ms == self.window_ms else "hopping"
        return self.window

    @property
    def size(self) -> int:
        """Nominal size of a tumbling/hopping window in ms (``window_ms`` of the legacy kinds)."""
        size = self.window_ms if self.kind is not None else self.size_ms
        assert size is not None, "only time windows have a size"
        return size

    @property
    def hop(self) -> int:
        """Hop of a tumbling/hopping window in ms (a tumbling window hops by its size)."""
        return self.hop_ms if self.hop_ms is not None else self.size

    @property
    def offset(self) -> int:
        """Window starts are ``offset_ms`` after the epoch's (or the time zone's) hop grid."""
        return self.offset_ms or 0

    @property
    def emits_partial(self) -> bool:
        """Count windows: a key's first n - 1 events have results too (the default)."""
        return self.partial is not False

    @property
    def value_columns(self) -> tuple[str, ...]:
        """The event value columns the metric reads."""
        return tuple(c for c in (self.field, self.weight_field) if c)

    @property
    def is_windowed(self) -> bool:
        """A tumbling or hopping time window."""
        return self.window_kind in ("tumbling", "hopping")

    @property
    def span_ms(self) -> int:
        """Longest event-time span of one window: its size (a DST day is an hour longer); a session's gap."""
        if self.is_windowed:
            return self.size + (3_600_000 * -(-self.size // DAY_MS) if self.time_zone else 0)
        return self.gap_ms or 0

    @property
    def lookback_ms(self) -> int:
        """Event time to replay before a range so its first windows are complete (0 for count windows)."""
        return self.span_ms + self.grace_ms if self.window_kind in ("tumbling", "hopping", "session") else 0

    @property
    def lookback_events(self) -> int:
        """Events per key to replay before a range (n - 1 for count windows, else 0)."""
        return (self.n or 1) - 1 if self.window_kind == "count" else 0

    def check_columns(self, value_fields: tuple[str, ...]) -> None:
        """Refuse a field or weight that is not a value column of the events."""
        for role, column in (("field", self.field), ("weight", self.weight_field)):
            if column and column not in value_fields:
                raise self._fail(f"{role} must be one of {', '.join(value_fields)}, got {column!r}")

    def to_dict(self) -> dict[str, Any]:
        """The metric as written (defaults the legacy kinds fill in included, as they always were)."""
        d = {k: v for k, v in asdict(self).items() if v is not None and v != ""}
        if self.window_kind in ("count", None):
            d.pop("grace_ms", None)
        return d


@dataclass(frozen=True)
class PipelineSpec:
    """Topics, fields and metrics of one pipeline."""

    topics: TopicsSpec = field(default_factory=TopicsSpec)
    fields: FieldsSpec = field(default_factory=FieldsSpec)
    metrics: tuple[MetricSpec, ...] = ()
    source: str | None = None
    events: EventsSpec | None = None  # the raw events' layout; None: the one [fields] describes
    outputs: OutputsSpec = field(default_factory=OutputsSpec)  # default: the toolkit's own output record

    def __post_init__(self) -> None:
        if not self.metrics:
            raise SpecError("the spec defines no [[metrics]]", path=self.source, hint="add at least one metric")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise SpecError(f"metric names must be unique, got {names}", path=self.source)
        object.__setattr__(self, "_legacy_fields", self.events is None)
        if self.events is None:
            object.__setattr__(self, "events", self.fields.events())
        for m in self.metrics:
            try:
                m.check_columns(self.value_fields)
            except SpecError as exc:
                raise SpecError(exc.message, path=self.source, hint=exc.hint) from None
        for table in ("metrics", "windows"):
            unknown = sorted(set(getattr(self.outputs, table)) - set(names))
            if unknown:
                raise SpecError(f"[outputs] {table} names unknown metric(s) {', '.join(unknown)}", path=self.source)
        for m in self.metrics:
            if m.window_kind == "session" and self.outputs.window is None and m.name not in self.outputs.windows:
                raise SpecError(
                    f"[outputs] metric {m.name!r} is a session: its records must hold its start",
                    path=self.source,
                    hint="set window = <path of the session start> (window_end may hold its end as well)",
                )

    @property
    def layout(self) -> EventsSpec:
        """The raw events' layout (``[events]``, or the one ``[fields]`` describes)."""
        assert self.events is not None
        return self.events

    @property
    def value_fields(self) -> tuple[str, ...]:
        """The value columns events carry (besides event_id, key, seq, ts), in the spec's order."""
        return self.layout.value_columns

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> PipelineSpec:
        """Build and validate a spec from the parsed TOML (unknown keys are errors)."""
        try:
            _check_keys(data, {"topics", "fields", "events", "outputs", "metrics"}, "the spec", source)
            if "fields" in data and "events" in data:
                raise SpecError("use [events] or the older [fields], not both", path=source)
            topics = data.get("topics", {})
            _check_keys(topics, set(TopicsSpec.__dataclass_fields__), "[topics]", source)
            fields_ = data.get("fields", {})
            _check_keys(fields_, set(FieldsSpec.__dataclass_fields__), "[fields]", source)
            metrics = []
            for i, raw in enumerate(data.get("metrics", [])):
                _check_keys(raw, set(MetricSpec.__dataclass_fields__), f"[[metrics]] #{i + 1}", source)
                if "name" not in raw or not {"kind", "aggregation", "function"} & set(raw):
                    raise SpecError(
                        f"[[metrics]] #{i + 1} needs a name and a kind (or an aggregation or a function)", path=source
                    )
                metrics.append(MetricSpec(**raw))
            events = EventsSpec.from_table(data["events"]) if "events" in data else None
            outputs = OutputsSpec.from_table(data["outputs"]) if "outputs" in data else OutputsSpec()
            return cls(TopicsSpec(**topics), FieldsSpec(**fields_), tuple(metrics), source, events, outputs)
        except SpecError as exc:
            if exc.path is None and source is not None:
                raise SpecError(exc.message, path=source, hint=exc.hint) from None
            raise
        except TypeError as exc:
            raise SpecError(str(exc), path=source) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for manifests and notebooks); ``from_dict(to_dict())`` round-trips."""
        metrics = [m.to_dict() for m in self.metrics]
        if getattr(self, "_legacy_fields", True) and self.outputs.legacy:
            return {"topics": asdict(self.topics), "fields": asdict(self.fields), "metrics": metrics}
        out: dict[str, Any] = {"topics": asdict(self.topics)}
        if getattr(self, "_legacy_fields", True):
            out["fields"] = asdict(self.fields)
        else:
            out["events"] = self.layout.to_table()
        if not self.outputs.legacy:
            out["outputs"] = self.outputs.to_table()
        out["metrics"] = metrics
        return out

    def digest(self) -> str:
        """SHA-256 of the canonical spec (what a fix set records)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def metric(self, name: str) -> MetricSpec:
        """The metric called ``name``."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise SpecError(f"no metric named {name!r}", path=self.source, hint=f"known: {', '.join(self.metric_names)}")

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]

    @property
    def lookback_ms(self) -> int:
        """Event time to replay before a range for every time-window metric."""
        return max((m.lookback_ms for m in self.metrics), default=0)

    @property
    def lookback_events(self) -> int:
        """Events per key to replay before a range for every sma metric."""
        return max((m.lookback_events for m in self.metrics), default=0)


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a pipeline spec from a TOML file."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"spec file {str(p)!r} not found", hint="pass --spec pipeline.toml (the repo has an example)")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}", path=str(p)) from None
    return PipelineSpec.from_dict(data, source=str(p))
