"""Reports read well on any span: durations in large units, time axes labelled by the span, tables as text."""

from __future__ import annotations

import polars as pl
import pytest

from recovery import frames
from recovery.notebook import charts, tables, timefmt
from recovery.records.events import decode_json

DAY = 86_400_000
T2007 = 1_167_868_800_000  # 2007-01-04T00:00Z


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (10_608_480 * 60_000, "20.2 years"),  # the range a new user saw as "10,608,480 min"
        (6937 * DAY, "19 years"),
        (2 * DAY, "2 days"),
        (DAY, "1 day"),
        (90 * 60_000, "1.5 h"),
        (60 * 60_000, "1 h"),
        (30 * 60_000, "30 min"),
        (6_250, "6.25 s"),
        (250, "250 ms"),
    ],
)
def test_durations_read_in_the_largest_sensible_unit(ms: int, expected: str) -> None:
    assert timefmt.format_duration_ms(ms) == expected


@pytest.mark.parametrize(
    ("span_ms", "label", "context"),
    [
        (60_000, "%H:%M:%S", "2007-01-04"),
        (3_600_000, "%H:%M", "2007-01-04"),
        (2 * DAY, "%b %d %H:%M", "2007"),
        (30 * DAY, "%b %d", "2007"),
        (400 * DAY, "%b %Y", ""),
        (6937 * DAY, "%Y", ""),
    ],
)
def test_axis_labels_suit_the_span_and_the_title_says_what_they_omit(span_ms: int, label: str, context: str) -> None:
    axis = timefmt.axis_time(T2007, T2007 + span_ms)
    assert (axis.label_format, axis.context) == (label, context)


def test_nineteen_years_of_daily_events_label_years_without_overlap() -> None:
    days = 6937
    events = frames.conform(
        pl.DataFrame({"i": pl.int_range(0, days, eager=True)}).with_columns(
            pl.lit(0).alias("partition"),
            pl.col("i").alias("offset"),
            (T2007 + pl.col("i") * DAY).alias("ts"),
            (T2007 + pl.col("i") * DAY).alias("timestamp_ms"),
            pl.col("i").cast(pl.String).alias("event_id"),
            pl.lit("ACME").alias("key"),
            (pl.col("i") + 1).alias("seq"),
            pl.lit(100.0).alias("price"),
            pl.lit(1.0).alias("volume"),
        ),
        frames.EVENTS,
    )
    chart = charts.volume_over_time(events).to_dict()
    x = chart["encoding"]["x"]
    assert x["axis"]["format"] == "%Y"
    assert x["axis"]["tickCount"] == {"interval": "year", "step": 2}  # 10 labels over 19 years
    assert chart["title"]["subtitle"] == "event time, per quarter"  # 19 years in <= 120 calendar buckets
    starts = sorted({row["t"] for rows in chart["datasets"].values() for row in rows})
    assert all(pl.from_epoch(pl.Series([t]), time_unit="ms").dt.day().item() == 1 for t in starts)
    assert sum(row["events"] for rows in chart["datasets"].values() for row in rows) == days


def test_figures_render_as_text_not_quoted_strings() -> None:
    from recovery.notebook.explore import figures

    html = tables.frame_html(figures([("events", 12345), ("share", "12.5%")]))
    assert "&quot;" not in html
    assert "<td>events</td><td>12,345</td>" in html


def test_result_windows_show_as_times_and_count_windows_keep_their_seq() -> None:
    from recovery.config import PROJECT_ROOT
    from recovery.spec import PipelineSpec, load_spec

    spec: PipelineSpec = load_spec(PROJECT_ROOT / "pipeline.toml")
    corrections = pl.DataFrame(
        {
            "key": ["A", "A"],
            "metric": ["mean_1m", "sma_5"],
            "window": [T2007, 42],
            "time_ms": [T2007, T2007 + 1500],
            "action": ["upsert", "upsert"],
            "value": [1.0, 2.0],
            "reason": ["wrong", "missing"],
        }
    )
    shown = tables.readable_results(corrections, spec)
    assert shown.get_column("window").to_list() == ["2007-01-04T00:00:00.000Z", "seq 42"]
    assert shown.get_column("time").to_list() == ["2007-01-04T00:00:00.000Z", "2007-01-04T00:00:01.500Z"]


def test_a_bad_json_reason_names_the_position_once() -> None:
    assert decode_json(b'{"a": "unterminated') == "bad JSON: Unterminated string starting at char 6"
    assert decode_json(b"{") == "bad JSON: Expecting property name enclosed in double quotes at char 1"
