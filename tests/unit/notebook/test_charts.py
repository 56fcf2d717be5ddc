"""Charts build from the pipeline's frames, stay small on big inputs, and export to HTML/PNG/SVG."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl
import pytest

from recovery import frames
from recovery.errors import ConfigError, DataError
from recovery.notebook import chart_style, charts

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def comparison_frame(n: int, keys: int = 3, bad_every: int = 10) -> pl.DataFrame:
    """``n`` sma results over ``keys`` keys, one event per second, every ``bad_every``-th one wrong or missing."""
    i = pl.int_range(0, n, eager=True)
    frame = pl.DataFrame({"i": i}).with_columns(
        ("K" + (pl.col("i") % keys).cast(pl.String)).alias("key"),
        pl.lit("sma_5").alias("metric"),
        (pl.col("i") // keys + 1).alias("window"),
        (T0_MS + pl.col("i") * 1000).alias("time_ms"),
        (100.0 + (pl.col("i") % 50).cast(pl.Float64) / 10).alias("corrected"),
        pl.lit(1).alias("copies"),
        pl.lit(False).alias("conflicting"),
        pl.when(pl.col("i") % bad_every == 0)
        .then(pl.when(pl.col("i") % (2 * bad_every) == 0).then(pl.lit("wrong")).otherwise(pl.lit("missing")))
        .otherwise(pl.lit("ok"))
        .alias("status"),
    )
    frame = frame.with_columns(
        pl.when(pl.col("status") == "missing")
        .then(None)
        .when(pl.col("status") == "wrong")
        .then(pl.col("corrected") + 1.0)
        .otherwise(pl.col("corrected"))
        .alias("original")
    )
    return frames.conform(frame, frames.COMPARISON)


def events_frame(n: int, partitions: int = 3) -> pl.DataFrame:
    """``n`` events, 10 per second of event time, Kafka timestamps 0..2 s later."""
    i = pl.int_range(0, n, eager=True)
    frame = pl.DataFrame({"i": i}).with_columns(
        (pl.col("i") % partitions).alias("partition"),
        pl.col("i").alias("offset"),
        (T0_MS + pl.col("i") * 100).alias("ts"),
        pl.col("i").cast(pl.String).alias("event_id"),
        ("K" + (pl.col("i") % (2 * partitions)).cast(pl.String)).alias("key"),
        (pl.col("i") // (2 * partitions) + 1).alias("seq"),
        (100.0 + (pl.col("i") % 7).cast(pl.Float64)).alias("price"),
        pl.lit(1.5).alias("volume"),
    )
    frame = frame.with_columns((pl.col("ts") + (pl.col("i") * 37) % 2000).alias("timestamp_ms"))
    return frames.conform(frame, frames.EVENTS)


def quarantine_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "partition": [0, 1, 1],
            "offset": [3, 8, 9],
            "timestamp_ms": [T0_MS, T0_MS + 5, T0_MS + 9],
            "key": ["K0", None, "K1"],
            "value": ["{bad", "", '{"price": "NaN"}'],
            "reason": ["invalid JSON", "empty value", "price is not a finite number"],
        },
        schema=frames.QUARANTINE,
    )


def datasets(chart: Any) -> list[list[dict[str, Any]]]:
    return list(chart.to_dict()["datasets"].values())


def rows_of(chart: Any) -> list[dict[str, Any]]:
    return [row for rows in datasets(chart) for row in rows]


COMPARISON_CHARTS: dict[str, Callable[[pl.DataFrame], Any]] = {
    "overlay": charts.overlay,
    "discrepancy_heatmap": charts.discrepancy_heatmap,
    "class_counts": charts.class_counts,
    "class_totals": charts.class_totals,
}
EVENT_CHARTS: dict[str, Callable[[pl.DataFrame], Any]] = {
    "lateness_histogram": charts.lateness_histogram,
    "partition_throughput": charts.partition_throughput,
    "volume_per_partition": charts.volume_over_time,
    "volume_per_key": lambda events: charts.volume_over_time(events, by="key"),
}


@pytest.mark.parametrize("name", sorted(COMPARISON_CHARTS))
@pytest.mark.parametrize("n", [0, 1, 240])
def test_comparison_charts_build(name: str, n: int) -> None:
    spec = COMPARISON_CHARTS[name](comparison_frame(n)).to_dict()  # to_dict validates against the schema
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")


@pytest.mark.parametrize("name", sorted(EVENT_CHARTS))
@pytest.mark.parametrize("n", [0, 1, 500])
def test_event_charts_build(name: str, n: int) -> None:
    spec = EVENT_CHARTS[name](events_frame(n)).to_dict()
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")


@pytest.mark.parametrize("n", [0, 3])
def test_quarantine_chart_builds(n: int) -> None:
    chart = charts.quarantine_reasons(quarantine_frame().head(n))
    assert chart.to_dict()["$schema"]


def test_empty_comparison_says_all_clear() -> None:
    chart = charts.discrepancy_heatmap(frames.empty(frames.COMPARISON))
    assert rows_of(chart) == [{"text": "All clear: no discrepancies."}]


def test_the_house_theme_is_registered_and_active() -> None:
    assert charts.THEME in alt.theme.names()
    assert alt.theme.active == charts.THEME
    config = charts.class_counts(comparison_frame(30)).to_dict()["config"]
    assert config["range"]["category"] == charts.CATEGORY_PALETTE


def test_status_colours_are_the_same_in_every_chart() -> None:
    spec = charts.class_counts(comparison_frame(30)).to_dict()
    scale = spec["encoding"]["color"]["scale"]
    assert scale["domain"] == ["missing", "wrong"]
    assert scale["range"] == [charts.STATUS_COLORS["missing"], charts.STATUS_COLORS["wrong"]]


def test_overlay_marks_every_discrepancy_of_a_small_series_at_its_time() -> None:
    comparison = comparison_frame(60, keys=2)
    rows = rows_of(charts.overlay(comparison))
    markers = sorted((r["key"], r["t"], r["status"]) for r in rows if r["series"] == "discrepancy")
    expected = sorted(comparison.filter(pl.col("status") != "ok").select("key", "time_ms", "status").iter_rows())
    assert markers == expected
    assert sum(r["series"] == "original" for r in rows) == 60
    assert sum(r["series"] == "corrected" for r in rows) == 60


def test_overlay_shows_the_keys_with_most_discrepancies_first() -> None:
    comparison = comparison_frame(90, keys=3, bad_every=1000)
    worst = comparison.with_columns(
        pl.when((pl.col("key") == "K2") & (pl.col("window") <= 5))
        .then(pl.lit("wrong"))
        .otherwise("status")
        .alias("status")
    )
    assert charts.worst_keys(worst, limit=2) == ["K2", "K0"]
    spec = charts.overlay(worst, max_keys=1).to_dict()
    assert [panel["layer"][0]["encoding"]["y"]["title"] for panel in spec["vconcat"]] == ["K2 sma_5"]


def test_overlay_focuses_on_the_corrected_series_when_originals_stray_far() -> None:
    comparison = comparison_frame(60, keys=1).with_columns(
        pl.when(pl.col("status") == "wrong").then(pl.col("corrected") * 100).otherwise("original").alias("original")
    )
    spec = charts.overlay(comparison).to_dict()
    scale = spec["vconcat"][0]["layer"][0]["encoding"]["y"]["scale"]
    low, high = comparison["corrected"].min(), comparison["corrected"].max()
    assert scale["clamp"] is True and scale["domain"][0] < low < high < scale["domain"][1] < 2 * high
    assert "drawn at the edge" in spec["title"]["subtitle"]
    assert (
        "domain"
        not in charts.overlay(comparison_frame(60, keys=1)).to_dict()["vconcat"][0]["layer"][0]["encoding"]["y"][
            "scale"
        ]
    )


def test_overlay_of_an_unknown_metric_names_the_known_ones() -> None:
    with pytest.raises(DataError, match="metrics in the comparison: sma_5"):
        charts.overlay(comparison_frame(10), metric="vwap_5m")


def test_overlay_downsamples_long_series() -> None:
    comparison = comparison_frame(30_000, keys=2, bad_every=3)
    rows = rows_of(charts.overlay(comparison, max_points=200, max_markers=50))
    lines = [r for r in rows if r["series"] != "discrepancy"]
    markers = [r for r in rows if r["series"] == "discrepancy"]
    assert len(lines) <= 2 * 2 * 200
    assert len(markers) <= 2 * 2 * 50  # per key and status
    assert sum(r["count"] for r in markers) == comparison.filter(pl.col("status") != "ok").height


def test_heatmap_counts_add_up_and_lump_small_keys() -> None:
    comparison = comparison_frame(700, keys=7, bad_every=2)
    rows = rows_of(charts.discrepancy_heatmap(comparison, max_keys=4))
    assert sum(r["discrepancies"] for r in rows) == comparison.filter(pl.col("status") != "ok").height
    assert charts.OTHER in {r["key"] for r in rows}
    assert len({r["key"] for r in rows}) == 5


def test_lateness_histogram_counts_every_drawn_event() -> None:
    events = events_frame(1000)
    rows = rows_of(charts.lateness_histogram(events, clip_quantile=1.0))
    assert sum(r["events"] for r in rows) == 1000
    assert all(r["to_ms"] - r["from_ms"] in (1, 2, 5, 10, 20, 50, 100) for r in rows)


def test_lateness_histogram_accepts_a_lateness_column() -> None:
    frame = pl.DataFrame({"lateness_ms": [0, 10, 20, 5000]})
    rows = rows_of(charts.lateness_histogram(frame, grace_ms=1000, clip_quantile=1.0))
    assert sum(r.get("events", 0) for r in rows) == 4
    assert {"grace_ms": 1000, "label": "grace 1,000 ms"} in rows


def test_throughput_is_per_second() -> None:
    events = events_frame(600, partitions=2)  # 10 events/s over 60 s, half per partition
    rows = rows_of(charts.partition_throughput(events, max_buckets=6))
    assert {r["partition"] for r in rows} == {0, 1}
    assert max(r["rate"] for r in rows) <= 6.0


def test_volume_over_time_rejects_an_unknown_grouping() -> None:
    with pytest.raises(ConfigError, match="'partition' or 'key'"):
        charts.volume_over_time(events_frame(10), by="symbol")


def test_missing_columns_are_named() -> None:
    with pytest.raises(DataError, match="needs columns status"):
        charts.class_counts(pl.DataFrame({"time_ms": [1]}))


@pytest.mark.parametrize(
    ("span_ms", "max_buckets", "expected"),
    [(0, 10, 1), (59_000, 60, 1_000), (3_600_000, 60, 60_000), (3_600_000, 100, 60_000), (86_400_000, 24, 3_600_000)],
)
def test_bucket_sizes_are_readable(span_ms: int, max_buckets: int, expected: int) -> None:
    assert charts.bucket_ms_for(span_ms, max_buckets) == expected


@pytest.mark.parametrize(("raw", "expected"), [(0.3, 1), (1, 1), (1.2, 2), (3, 5), (7, 10), (49, 50), (120, 200)])
def test_nice_steps(raw: float, expected: int) -> None:
    assert charts.nice_step(raw) == expected


def test_a_million_events_give_small_specs() -> None:
    """A 1M-event incident: every chart's spec (data included) stays small, so its report stays < 5 MB."""
    comparison = comparison_frame(1_000_000, keys=6, bad_every=7)
    events = events_frame(1_000_000, partitions=6)
    sizes = {name: charts.spec_size_bytes(make(comparison)) for name, make in COMPARISON_CHARTS.items()}
    sizes |= {name: charts.spec_size_bytes(make(events)) for name, make in EVENT_CHARTS.items()}
    assert max(sizes.values()) < 500_000, sizes
    assert sum(sizes.values()) < 1_500_000, sizes


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html", ".json"])
def test_save_chart_picks_the_format_from_the_suffix(tmp_path: Path, suffix: str) -> None:
    path = charts.save_chart(charts.overlay(comparison_frame(90)), tmp_path / f"chart{suffix}")
    data = path.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    elif suffix == ".svg":
        assert b"<svg" in data[:500] and b"<script" not in data
    elif suffix == ".html":
        text = data.decode()
        assert "window.vegaEmbed=" in text  # the scripts are inline: the file opens offline
        assert "cdn.jsdelivr.net" not in text
    else:
        assert len(json.loads(data)["vconcat"]) == 3  # one panel per key


def test_save_chart_lists_the_supported_suffixes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unsupported suffix '\.pdf'.*\.html, \.json, \.png, \.svg"):
        charts.save_chart(charts.class_totals(comparison_frame(5)), tmp_path / "chart.pdf")
    assert not (tmp_path / "chart.pdf").exists()


def test_offline_renderer_embeds_the_scripts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chart_style, "_vega_bundle", lambda: "window.vegaEmbed=function(){};</script>")
    previous = alt.renderers.active
    try:
        charts.use_offline_renderer()
        first = charts.class_counts(comparison_frame(20))._repr_mimebundle_()
        second = charts.class_totals(comparison_frame(20))._repr_mimebundle_()
    finally:
        alt.renderers.enable(previous)
    first_html = first[0]["text/html"] if isinstance(first, tuple) else first["text/html"]
    second_html = second[0]["text/html"] if isinstance(second, tuple) else second["text/html"]
    assert first_html.count("window.vegaEmbed=function") == 1
    assert "window.vegaEmbed=function" not in second_html
    assert "<\\/script" in first_html  # a bundle cannot close its own script tag
    assert "Results by class and metric" in second_html


def test_class_counts_stack_per_bucket() -> None:
    comparison = comparison_frame(100, keys=1, bad_every=2)  # 25 missing + 25 wrong over 100 s
    rows = rows_of(charts.class_counts(comparison, max_buckets=1))
    assert [(r["status"], r["bottom"], r["top"]) for r in rows] == [("missing", 0, 25), ("wrong", 25, 50)]
