"""What an analyst reads while exploring an incident (notebook 01): the case, the data, what looks wrong.

The runbooks only call functions: each returns a small polars frame, a :class:`Text` (Markdown that
notebooks render) or a dataclass of those, so the notebooks hold no logic and the same summaries are
available from a Python shell.

Relative paths in runbook parameters (incident files, specs, fix sets) are resolved against the
project's working directory: ``$RECOVERY_WORKDIR`` when set, else the project root. Notebooks run from
JupyterLab (cwd ``notebooks/``), papermill and the tests therefore agree on where ``fixes/demo`` is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl
from kafka import TopicPartition

from recovery.config import PROJECT_ROOT, KafkaSettings
from recovery.errors import ConfigError
from recovery.frames import STATUSES
from recovery.kafka.clients import admin, guarded
from recovery.kafka.topics import offsets
from recovery.notebook.timefmt import format_duration_ms
from recovery.pipeline.dedup import DedupResult, dedup
from recovery.pipeline.steps import originals_for_range
from recovery.records.validate import quarantine_counts, validate
from recovery.replay.bounded import ReplayResult, replay
from recovery.sim.simulate import read_incident
from recovery.source import KafkaSource
from recovery.spec import PipelineSpec, load_spec
from recovery.timerange import TimeRange, format_ms, parse_time_ms

WORKDIR_ENV = "RECOVERY_WORKDIR"
LAG = pl.Schema(
    {"topic": pl.String, "partition": pl.Int32, "committed": pl.Int64, "end_offset": pl.Int64, "lag": pl.Int64}
)
FIGURES = pl.Schema({"figure": pl.String, "value": pl.String})


class Text(str):
    """Markdown that a notebook renders (and a console prints as is)."""

    def _repr_markdown_(self) -> str:
        return str(self)


def workdir() -> Path:
    """Where relative runbook paths point: ``$RECOVERY_WORKDIR`` or the project root."""
    return Path(os.environ.get(WORKDIR_ENV) or PROJECT_ROOT)


def resolve_path(path: str | Path) -> Path:
    """``path`` itself when absolute, else relative to :func:`workdir`."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else workdir() / p


def figures(rows: list[tuple[str, Any]]) -> pl.DataFrame:
    """A two-column table (figure, value) for overviews; numbers get thousands separators."""

    def show(value: Any) -> str:
        if isinstance(value, bool) or value is None:
            return str(value)
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:,.3f}".rstrip("0").rstrip(".")
        return str(value)

    return pl.DataFrame([(name, show(value)) for name, value in rows], schema=FIGURES, orient="row")


# ---------------------------------------------------------------- the case


@dataclass(frozen=True)
class Case:
    """What a runbook works on: the spec, the cluster, the range and the incident it belongs to."""

    spec: PipelineSpec
    settings: KafkaSettings
    from_ms: int
    to_ms: int
    incident: str
    incident_file: Path | None = None
    incident_data: dict[str, Any] | None = None

    @property
    def range(self) -> TimeRange:
        return TimeRange(self.from_ms, self.to_ms)

    @property
    def expected_counts(self) -> dict[str, int] | None:
        """Discrepancies per class that the incident file predicts for its recovery range (None without one)."""
        predicted = (self.incident_data or {}).get("predicted") or {}
        counts = predicted.get("counts")
        return {k: int(v) for k, v in counts.items()} if counts else None

    @property
    def consumer_group(self) -> str | None:
        """The live worker's consumer group recorded in the incident file, if any."""
        group = ((self.incident_data or {}).get("run") or {}).get("group")
        return str(group) if group else None

    @property
    def grace_ms(self) -> int:
        """The largest grace period of the spec's time-window metrics (0 without any)."""
        return max((m.grace_ms for m in self.spec.metrics if m.is_windowed), default=0)

    def describe(self) -> Text:
        """The case in a few lines of Markdown (for the top of a report)."""
        t = self.spec.topics
        metrics = ", ".join(f"`{m.name}` ({m.kind})" for m in self.spec.metrics)
        lines = [
            f"**Incident** `{self.incident}`"
            + (f" (incident file `{self.incident_file}`)" if self.incident_file else ""),
            f"**Range** {format_ms(self.from_ms)} .. {format_ms(self.to_ms)} (UTC, end exclusive, "
            f"{format_duration_ms(self.to_ms - self.from_ms)})",
            f"**Topics** raw `{t.raw}`, outputs `{t.output}`, corrections `{t.corrections}`, audit `{t.audit}`",
            f"**Metrics** {metrics}",
            f"**Cluster** {self.settings.describe()}",
        ]
        return Text("\n\n".join(lines))


def _with_topics(spec: PipelineSpec, raw_topic: str, output_topic: str) -> PipelineSpec:
    if not raw_topic and not output_topic:
        return spec
    topics = replace(spec.topics, raw=raw_topic or spec.topics.raw, output=output_topic or spec.topics.output)
    return replace(spec, topics=topics)


def open_case(
    incident_file: str = "",
    spec_path: str = "pipeline.toml",
    from_time: str = "",
    to_time: str = "",
    bootstrap_servers: str = "",
    raw_topic: str = "",
    output_topic: str = "",
) -> Case:
    """The case of a runbook from its parameters.

    With an incident file (from ``recovery simulate``) its spec, topics and recommended recovery range are
    used; ``from_time``/``to_time`` and the topic names override them. Without one, ``spec_path`` and
    both times are required.
    """
    settings = KafkaSettings.from_env({"bootstrap_servers": bootstrap_servers or None})
    data: dict[str, Any] | None = None
    path: Path | None = None
    if incident_file:
        path = resolve_path(incident_file)
        data = read_incident(path)
        spec = PipelineSpec.from_dict(data["spec"], source=str(path))
        suggested = data.get("recovery_range") or data["time_range"]
        from_ms = parse_time_ms(from_time, name="from_time") if from_time else int(suggested["from_ms"])
        to_ms = parse_time_ms(to_time, name="to_time") if to_time else int(suggested["to_ms"])
        incident = str(data.get("incident") or path.stem)
    else:
        if not from_time or not to_time:
            raise ConfigError(
                "without an incident file, from_time and to_time are required",
                hint="e.g. -p from_time 2026-01-05T09:00 -p to_time 2026-01-05T10:00 (UTC)",
            )
        spec = load_spec(resolve_path(spec_path))
        from_ms, to_ms = parse_time_ms(from_time, name="from_time"), parse_time_ms(to_time, name="to_time")
        from recovery.pipeline.recover import default_incident

        incident = default_incident(from_ms, to_ms)
    TimeRange(from_ms, to_ms)  # a reversed or empty range is a one-line error here
    return Case(_with_topics(spec, raw_topic, output_topic), settings, from_ms, to_ms, incident, path, data)


# ---------------------------------------------------------------- the data of a range


@dataclass(frozen=True)
class RawView:
    """The raw events that arrived for a range (no lookback), validated and deduplicated, and the outputs."""

    case: Case
    replay: ReplayResult
    events: pl.DataFrame  # valid, deduplicated EVENTS with event time in the range
    arrived: pl.DataFrame  # valid EVENTS as they arrived (duplicates included), event time in the range
    quarantine: pl.DataFrame
    quality: DedupResult
    outputs: pl.DataFrame  # OUTPUTS published for the range
    outputs_quarantine: pl.DataFrame


def load_range(case: Case) -> RawView:
    """Read the range's raw events and published outputs (bounded replays) and measure their quality."""
    spec = case.spec
    raw = replay(
        KafkaSource(spec.topics.raw, case.settings),
        from_ms=case.from_ms,
        to_ms=case.to_ms,
        lookback_ms=0,
        lookback_events=0,
        quiet=True,
    )
    events, quarantine = validate(raw.frame(), spec)
    in_range = events.filter(pl.col("ts").is_between(case.from_ms, case.to_ms, closed="left"))
    quality = dedup(in_range, quarantine=quarantine, fields=spec.layout)
    outputs, outputs_bad, _ = originals_for_range(spec, case.from_ms, case.to_ms, settings=case.settings)
    return RawView(case, raw, quality.events, in_range, quarantine, quality, outputs, outputs_bad)


def late_events(view: RawView) -> pl.DataFrame:
    """Events that arrived more than the grace period after their event time (Kafka time minus event time)."""
    grace = view.case.grace_ms
    return view.arrived.filter((pl.col("timestamp_ms") - pl.col("ts")) > grace)


def missing_sma_results(view: RawView) -> pl.DataFrame:
    """Per key: events in the range without a published moving-average result (a quick check before 02)."""
    sma = [m.name for m in view.case.spec.metrics if m.kind == "sma"]
    if not sma:
        return pl.DataFrame(schema={"key": pl.String, "metric": pl.String, "missing": pl.Int64})
    frames = []
    for name in sma:
        published = view.outputs.filter(pl.col("metric") == name).select("key", pl.col("window").alias("seq"))
        missing = view.events.select("key", "seq").join(published.unique(), on=["key", "seq"], how="anti")
        frames.append(
            missing.group_by("key")
            .agg(pl.len().cast(pl.Int64).alias("missing"))
            .with_columns(pl.lit(name).alias("metric"))
        )
    result = pl.concat(frames).select("key", "metric", "missing")
    return result.filter(pl.col("missing") > 0).sort(["missing", "key"], descending=[True, False])


def republished_results(view: RawView) -> pl.DataFrame:
    """(key, metric, window) published more than once, with the number of copies."""
    return (
        view.outputs.group_by("key", "metric", "window")
        .agg(pl.len().cast(pl.Int64).alias("copies"), pl.col("value").n_unique().alias("values"))
        .filter(pl.col("copies") > 1)
        .sort("key", "metric", "window")
    )


def overview(view: RawView) -> pl.DataFrame:
    """The range in figures: records, events, quarantine, duplicates, gaps, order, lateness, outputs."""
    counts = view.quality.counts()
    lateness = view.arrived.select((pl.col("timestamp_ms") - pl.col("ts")).alias("ms")).get_column("ms")
    keys = view.events.get_column("key").n_unique()
    rows: list[tuple[str, Any]] = [
        ("raw records read (Kafka time in range)", view.replay.count),
        ("valid events with event time in range", view.arrived.height),
        ("unique events", counts["events"]),
        ("keys", keys),
        ("partitions", len(view.replay.snapshot.partitions)),
        ("quarantined (malformed) records", view.quarantine.height),
        ("duplicate events (same event id)", counts["duplicates"]),
        ("  of which with conflicting content", counts["conflicting_duplicates"]),
        ("seq gaps", counts["gaps"]),
        ("events lost upstream (in seq gaps)", counts["missing_events"]),
        ("events out of order", counts["out_of_order"]),
        ("out-of-order share", f"{counts['out_of_order'] / max(1, counts['events']):.2%}"),
        ("lateness p50 / p99 / max (ms)", _quantiles(lateness)),
        (f"events later than the grace period ({view.case.grace_ms:,} ms)", late_events(view).height),
        ("outputs published for the range", view.outputs.height),
        ("outputs published more than once", republished_results(view).height),
        ("malformed output records", view.outputs_quarantine.height),
    ]
    return figures(rows)


def _quantiles(values: pl.Series) -> str:
    if values.len() == 0:
        return "-"
    p50, p99 = values.quantile(0.5, "nearest"), values.quantile(0.99, "nearest")
    return f"{float(p50 or 0):,.0f} / {float(p99 or 0):,.0f} / {float(values.max() or 0):,.0f}"  # type: ignore[arg-type]


def quarantine_reasons(view: RawView) -> pl.DataFrame:
    """Quarantined records per reason category, most frequent first."""
    counts = quarantine_counts(view.quarantine)
    return pl.DataFrame(
        {"reason": list(counts), "records": list(counts.values())}, schema={"reason": pl.String, "records": pl.Int64}
    )


def consumer_lag(settings: KafkaSettings, group: str, topic: str) -> pl.DataFrame:
    """Committed offset, end offset and lag of consumer group ``group`` on every partition of ``topic``.

    A partition the group never committed has a null ``committed`` and its whole log as lag.
    """
    info = offsets(settings, topic)
    parts = [TopicPartition(topic, p) for p in sorted(info.end_offsets)]
    with admin(settings) as client:
        fetched = guarded(
            settings, f"reading the offsets of group {group}", lambda: client.list_group_offsets({group: parts})
        )
    committed = {tp.partition: meta.offset for tp, meta in (fetched.get(group) or {}).items() if meta.offset >= 0}
    rows = []
    for p in sorted(info.end_offsets):
        end = info.end_offsets[p]
        done = committed.get(p)
        rows.append((topic, p, done, end, end - (done if done is not None else info.start_offsets.get(p, 0))))
    return pl.DataFrame(rows, schema=LAG, orient="row")


def case_lag(case: Case, consumer_group: str = "") -> pl.DataFrame | Text:
    """Lag of ``consumer_group`` (or the incident's live worker group) on the raw topic, or why there is none."""
    group = consumer_group or case.consumer_group
    if not group:
        return Text("No consumer group given (parameter `consumer_group`): lag not measured.")
    return consumer_lag(case.settings, group, case.spec.topics.raw)


# ---------------------------------------------------------------- what looks wrong


def _some(values: list[str], limit: int = 4) -> str:
    shown = ", ".join(f"`{v}`" for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def what_looks_wrong(view: RawView, lag: pl.DataFrame | Text | None = None) -> Text:
    """A plain-language summary of the problems visible in the range, most serious first, and what next."""
    case, counts = view.case, view.quality.counts()
    items: list[str] = []
    missing_sma = missing_sma_results(view)
    if missing_sma.height:
        total = int(missing_sma.get_column("missing").sum())
        keys = missing_sma.get_column("key").unique(maintain_order=True).to_list()
        items.append(
            f"**{total:,} moving-average results were never published** (keys {_some(keys)}): events arrived "
            "but no output exists for them. A worker that committed its offsets before processing them "
            "(then crashed) loses outputs this way."
        )
    again = republished_results(view)
    if again.height:
        conflicting = again.filter(pl.col("values") > 1).height
        items.append(
            f"**{again.height:,} results were published more than once** ({conflicting:,} with different values). "
            "A worker restarted after publishing but before committing re-publishes (at least once); "
            "different values mean it restarted with cold windows."
        )
    if counts["missing_events"]:
        keys = view.quality.gaps.get_column("key").unique(maintain_order=True).to_list()
        items.append(
            f"**{counts['missing_events']:,} events never reached the raw topic** ({counts['gaps']:,} seq gaps on "
            f"keys {_some(keys)}). They were lost upstream: no recompute can bring them back, and results "
            "around them are computed without them."
        )
    late = late_events(view)
    if late.height:
        items.append(
            f"**{late.height:,} events arrived more than the grace period ({case.grace_ms:,} ms) after their "
            "event time.** The live worker drops such events, so the time windows they belong to are wrong."
        )
    if counts["out_of_order"]:
        share = counts["out_of_order"] / max(1, counts["events"])
        worst = view.quality.by_key.sort("out_of_order", descending=True).get_column("key").head(3).to_list()
        items.append(
            f"**{counts['out_of_order']:,} events ({share:.1%}) arrived after a later event of their key** "
            f"(most on {_some(worst)}). Moving averages computed in arrival order are wrong around them."
        )
    if counts["duplicates"]:
        items.append(
            f"**{counts['duplicates']:,} raw events were produced more than once** "
            f"({counts['conflicting_duplicates']:,} with conflicting content). The recompute keeps the first "
            "copy; results the live worker computed from both copies are wrong."
        )
    if view.quarantine.height:
        reasons = quarantine_counts(view.quarantine)
        top = ", ".join(f"{r} ({n:,})" for r, n in list(reasons.items())[:3])
        items.append(
            f"**{view.quarantine.height:,} malformed records were quarantined** ({top}). Nothing can be computed "
            "from them; the producer of the raw topic has to fix them."
        )
    if view.outputs_quarantine.height:
        items.append(f"**{view.outputs_quarantine.height:,} output records could not be decoded.**")
    if isinstance(lag, pl.DataFrame) and lag.height and int(lag.get_column("lag").sum()):
        items.append(
            f"**The live worker's group is {int(lag.get_column('lag').sum()):,} records behind** the raw topic."
        )
    if not items:
        return Text(
            f"**Nothing looks wrong in {case.range}**: no malformed, duplicate, missing, late or out-of-order "
            "events, and every event has its moving average. Wrong values can still hide in the outputs: "
            "notebook 02 recomputes and compares them."
        )
    command = f"recovery report 02_recompute_compare -p from_time {case.from_ms} -p to_time {case.to_ms}" + (
        f" -p incident_file {case.incident_file}" if case.incident_file else ""
    )
    body = "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))
    return Text(
        f"### What looks wrong in {case.range}\n\n{body}\n\n"
        f"**Next:** recompute this range and compare it with what was published (notebook 02):\n\n"
        f"```\n{command}\n```"
    )


def findings(view: RawView) -> dict[str, Any]:
    """What notebook 01 records for the runner: the range's problems in numbers."""
    counts = view.quality.counts()
    missing_sma = missing_sma_results(view)
    return {
        "incident": view.case.incident,
        "from": format_ms(view.case.from_ms),
        "to": format_ms(view.case.to_ms),
        "events": counts["events"],
        "quarantined": view.quarantine.height,
        "duplicates": counts["duplicates"],
        "missing_events": counts["missing_events"],
        "out_of_order": counts["out_of_order"],
        "late": late_events(view).height,
        "outputs": view.outputs.height,
        "republished": republished_results(view).height,
        "unpublished_sma": int(missing_sma.get_column("missing").sum()) if missing_sma.height else 0,
    }


def expected_vs_found(case: Case, found: dict[str, int]) -> pl.DataFrame | Text:
    """Discrepancy counts the incident file predicts next to those found (simulated incidents only)."""
    expected = case.expected_counts
    if expected is None:
        return Text("No incident file with predictions: nothing to check the counts against.")
    rows = [(s, expected.get(s, 0), found.get(s, 0)) for s in (*STATUSES, "conflicting")]
    frame = pl.DataFrame(rows, schema={"status": pl.String, "expected": pl.Int64, "found": pl.Int64}, orient="row")
    return frame.with_columns((pl.col("expected") == pl.col("found")).alias("match"))
