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

from recovery.errors import SpecError
from recovery.formats import EventsSpec, OutputsSpec

MetricKind = Literal["sma", "mean", "vwap"]
METRIC_KINDS: tuple[str, ...] = ("sma", "mean", "vwap")
VALUE_FIELDS: tuple[str, ...] = ("price", "volume")


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


@dataclass(frozen=True)
class MetricSpec:
    """One metric: ``sma`` over the last ``n`` events, or ``mean``/``vwap`` over epoch-aligned time windows.

    Time windows cover ``[start, start + window_ms)`` with ``start`` a multiple of ``hop_ms`` (tumbling when
    ``hop_ms == window_ms``) and close when the watermark (max event time - ``grace_ms``) reaches the end.
    """

    name: str
    kind: MetricKind
    field: str = "price"
    n: int | None = None
    window_ms: int | None = None
    hop_ms: int | None = None
    grace_ms: int = 0

    def __post_init__(self) -> None:
        where = f"metric {self.name!r}"
        if not isinstance(self.name, str) or not self.name or "|" in self.name:
            raise SpecError(f"metric names must be non-empty and without '|', got {self.name!r}")
        if self.kind not in METRIC_KINDS:
            raise SpecError(f"{where}: unknown kind {self.kind!r}", hint=f"use one of {', '.join(METRIC_KINDS)}")
        if not isinstance(self.field, str) or not self.field:
            raise SpecError(f"{where}: field must name a value column, got {self.field!r}")
        if self.kind == "sma":
            if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
                raise SpecError(f"{where}: sma needs n >= 1 (events in the window), got {self.n!r}")
            if self.window_ms is not None or self.hop_ms is not None or self.grace_ms:
                raise SpecError(f"{where}: sma is count-based; window_ms, hop_ms and grace_ms do not apply")
            return
        if self.n is not None:
            raise SpecError(f"{where}: n applies to sma only; {self.kind} uses window_ms")
        if not isinstance(self.window_ms, int) or self.window_ms < 1:
            raise SpecError(f"{where}: {self.kind} needs window_ms >= 1, got {self.window_ms!r}")
        if self.hop_ms is None:
            object.__setattr__(self, "hop_ms", self.window_ms)
        assert self.hop_ms is not None
        if not isinstance(self.hop_ms, int) or self.hop_ms < 1:
            raise SpecError(f"{where}: hop_ms must be >= 1, got {self.hop_ms!r}")
        if self.hop_ms > self.window_ms:
            raise SpecError(f"{where}: hop_ms ({self.hop_ms}) > window_ms ({self.window_ms}) would leave gaps")
        if not isinstance(self.grace_ms, int) or self.grace_ms < 0:
            raise SpecError(f"{where}: grace_ms must be >= 0, got {self.grace_ms!r}")

    @property
    def is_windowed(self) -> bool:
        return self.kind != "sma"

    @property
    def lookback_ms(self) -> int:
        """Event time to replay before a range so its first windows are complete (0 for sma)."""
        return (self.window_ms or 0) + self.grace_ms if self.is_windowed else 0

    @property
    def lookback_events(self) -> int:
        """Events per key to replay before a range (N-1 for sma, 0 for time windows)."""
        return (self.n or 1) - 1 if self.kind == "sma" else 0


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
        columns = self.value_fields
        for m in self.metrics:
            if m.field not in columns:
                raise SpecError(
                    f"metric {m.name!r}: field {m.field!r} is not a value column of the events",
                    path=self.source,
                    hint=f"value columns: {', '.join(columns)} ([events] values)",
                )
            if m.kind == "vwap" and "volume" not in columns:
                raise SpecError(f"metric {m.name!r}: vwap weighs by the value column volume, which the events lack")
        if self.outputs.metrics:
            unknown = sorted(set(self.outputs.metrics) - set(names))
            if unknown:
                raise SpecError(f"[outputs] metrics names unknown metric(s) {', '.join(unknown)}", path=self.source)

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
                if "name" not in raw or "kind" not in raw:
                    raise SpecError(f"[[metrics]] #{i + 1} needs a name and a kind", path=source)
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
        metrics = []
        for m in self.metrics:
            d = {k: v for k, v in asdict(m).items() if v is not None}
            if m.kind == "sma":
                d.pop("grace_ms", None)
            metrics.append(d)
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
