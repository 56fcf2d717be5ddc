"""The package functions the runbooks call (explore, reconcile, review), on small frames without a broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery import frames
from recovery.config import KafkaSettings
from recovery.errors import ApprovalError, ConfigError
from recovery.fixes.approval import new_approval, write_approval
from recovery.fixes.fixset import build_fixset, write_fixset
from recovery.notebook import explore, reconcile, review
from recovery.pipeline.dedup import dedup
from recovery.spec import FieldsSpec, MetricSpec, PipelineSpec, TopicsSpec

T0_MS = 1_767_603_600_000  # 2026-01-05T09:00:00Z
SETTINGS = KafkaSettings("127.0.0.1:9092")
SPEC = PipelineSpec(
    TopicsSpec(raw="r", output="o", corrections="c", audit="a", partitions=1),
    FieldsSpec(),
    (
        MetricSpec("sma_3", "sma", n=3),
        MetricSpec("mean_1m", "mean", window_ms=60_000, grace_ms=5_000),
        MetricSpec("vwap_2m", "vwap", window_ms=120_000, hop_ms=30_000, grace_ms=2_000),
    ),
)


def case(**fields: Any) -> explore.Case:
    values: dict[str, Any] = {
        "spec": SPEC,
        "settings": SETTINGS,
        "from_ms": T0_MS,
        "to_ms": T0_MS + 600_000,
        "incident": "inc-1",
    }
    values.update(fields)
    return explore.Case(**values)


def events(rows: list[tuple[int, int, str, int, int, int]]) -> pl.DataFrame:
    """EVENTS from (partition, offset, key, seq, ts offset ms, lateness ms)."""
    return pl.DataFrame(
        [(p, o, T0_MS + dt + late, f"{k}-{s}", k, s, T0_MS + dt, 100.0 + s, 1.0) for p, o, k, s, dt, late in rows],
        schema=frames.EVENTS,
        orient="row",
    )


def outputs(rows: list[tuple[str, str, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(k, m, w, T0_MS + w, v, 0, i, T0_MS + w) for i, (k, m, w, v) in enumerate(rows)],
        schema=frames.OUTPUTS,
        orient="row",
    )


def view(arrived: pl.DataFrame, published: pl.DataFrame, quarantine: pl.DataFrame | None = None) -> explore.RawView:
    quality = dedup(arrived)
    bad = quarantine if quarantine is not None else frames.empty(frames.QUARANTINE)
    return explore.RawView(
        case(),
        None,
        quality.events,
        arrived,
        bad,
        quality,
        published,
        frames.empty(frames.QUARANTINE),  # type: ignore[arg-type]
    )


CLEAN = events([(0, i, "A", i + 1, 1000 * i, 0) for i in range(5)])
CLEAN_OUTPUTS = outputs([("A", "sma_3", s, 100.0) for s in range(1, 6)])


def test_figures_format_numbers_for_reading() -> None:
    expected = pl.DataFrame(
        {"figure": ["n", "share", "flag", "text"], "value": ["12,345", "0.5", "True", "x"]}, schema=explore.FIGURES
    )
    assert_frame_equal(explore.figures([("n", 12345), ("share", 0.5), ("flag", True), ("text", "x")]), expected)


def test_text_renders_as_markdown() -> None:
    assert explore.Text("**bold**")._repr_markdown_() == "**bold**"


def test_relative_paths_resolve_against_the_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(explore.WORKDIR_ENV, str(tmp_path))
    assert explore.resolve_path("fixes/demo") == tmp_path / "fixes" / "demo"
    assert explore.resolve_path("/abs/x") == Path("/abs/x")


def test_a_case_without_incident_needs_both_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    with pytest.raises(ConfigError, match="from_time and to_time are required"):
        explore.open_case("", spec_path="pipeline.toml", from_time="2026-01-05T09:00")


def test_a_case_from_an_incident_file_takes_its_spec_and_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv(explore.WORKDIR_ENV, str(tmp_path))
    incident = {
        "format": "recovery-incident/1",
        "incident": "sim-1",
        "spec": SPEC.to_dict(),
        "time_range": {"from_ms": T0_MS, "to_ms": T0_MS + 900_000},
        "recovery_range": {"from_ms": T0_MS - 120_000, "to_ms": T0_MS + 840_000},
        "predicted": {"counts": {"ok": 5, "missing": 1}},
        "run": {"group": "g-1"},
    }
    (tmp_path / "incidents").mkdir()
    (tmp_path / "incidents" / "x.json").write_text(json.dumps(incident))
    opened = explore.open_case("incidents/x.json", raw_topic="other-raw")
    assert (opened.from_ms, opened.to_ms, opened.incident) == (T0_MS - 120_000, T0_MS + 840_000, "sim-1")
    assert (opened.spec.topics.raw, opened.spec.topics.output) == ("other-raw", "o")
    assert (opened.consumer_group, opened.grace_ms, opened.expected_counts) == ("g-1", 5_000, {"ok": 5, "missing": 1})
    narrowed = explore.open_case("incidents/x.json", from_time=str(T0_MS), to_time="2026-01-05T09:05:00Z")
    assert (narrowed.from_ms, narrowed.to_ms) == (T0_MS, T0_MS + 300_000)
    with pytest.raises(ConfigError, match="is after"):
        explore.open_case("incidents/x.json", from_time=str(T0_MS + 1), to_time=str(T0_MS))
    assert "`sma_3` (sma)" in opened.describe()


def test_nothing_looks_wrong_in_a_clean_range() -> None:
    clean = view(CLEAN, CLEAN_OUTPUTS)
    assert explore.missing_sma_results(clean).height == 0
    assert explore.republished_results(clean).height == 0
    assert explore.what_looks_wrong(clean).startswith("**Nothing looks wrong in")
    assert explore.findings(clean)["unpublished_sma"] == 0


def test_each_problem_is_named_in_plain_language() -> None:
    arrived = events(
        [
            (0, 0, "A", 1, 0, 0),
            (0, 1, "A", 2, 1000, 0),
            (0, 2, "A", 2, 1000, 0),  # the same event again (same event id)
            (0, 3, "A", 5, 4000, 0),  # seqs 3 and 4 never arrived
            (0, 4, "A", 6, 3500, 9000),  # arrived after a later event, beyond the 5 s grace
        ]
    )
    published = outputs(
        [("A", "sma_3", 1, 1.0), ("A", "sma_3", 2, 1.0), ("A", "sma_3", 2, 2.0), ("A", "sma_3", 5, 1.0)]
    )
    quarantine = pl.DataFrame([(0, 9, T0_MS, "A", "{", "bad JSON: truncated")], schema=frames.QUARANTINE, orient="row")
    problems = view(arrived, published, quarantine)
    text = explore.what_looks_wrong(problems)
    assert "**1 moving-average results were never published** (keys `A`)" in text
    assert "**1 results were published more than once** (1 with different values)" in text
    assert "**2 events never reached the raw topic** (1 seq gaps on keys `A`)" in text
    assert "**1 events arrived more than the grace period (5,000 ms)" in text
    assert "arrived after a later event of their key" in text
    assert "**1 raw events were produced more than once**" in text
    assert "**1 malformed records were quarantined** (bad JSON (1))" in text
    assert "recovery report 02_recompute_compare" in text
    found = explore.findings(problems)
    assert {k: found[k] for k in ("duplicates", "missing_events", "late", "republished", "unpublished_sma")} == {
        "duplicates": 1,
        "missing_events": 2,
        "late": 1,
        "republished": 1,
        "unpublished_sma": 1,
    }


def test_expected_vs_found_marks_mismatches() -> None:
    with_prediction = case(incident_data={"predicted": {"counts": {"ok": 5, "missing": 2}}})
    table = explore.expected_vs_found(with_prediction, {"ok": 5, "missing": 1})
    assert isinstance(table, pl.DataFrame)
    assert table.filter(pl.col("status") == "missing").row(0) == ("missing", 2, 1, False)
    assert isinstance(explore.expected_vs_found(case(), {"ok": 1}), explore.Text)


# ---------------------------------------------------------------- reconcile


def test_reconciliation_range_ends_where_every_window_is_closed() -> None:
    assert reconcile.alignment_ms(SPEC) == 60_000  # lcm of the hops 60 s and 30 s
    end_ms = T0_MS + 10 * 60_000 + 4_000  # 09:10:04, grace 5 s: the 09:09 minute is not closed yet
    assert reconcile.reconciliation_range(SPEC, end_ms, hours=0.5) == (T0_MS - 21 * 60_000, T0_MS + 9 * 60_000)
    with pytest.raises(ConfigError, match="hours must be > 0"):
        reconcile.reconciliation_range(SPEC, end_ms, hours=0)


def test_as_outputs_publishes_each_result_once() -> None:
    results = pl.DataFrame(
        [("A", "sma_3", 1, T0_MS, 1.0), ("B", "sma_3", 1, T0_MS + 5, None)], schema=frames.RESULTS, orient="row"
    )
    held = reconcile.as_outputs(results)
    assert held.schema == frames.OUTPUTS
    assert held.get_column("offset").to_list() == [0, 1]
    assert held.get_column("timestamp_ms").to_list() == [T0_MS, T0_MS + 5]


def comparison(statuses: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        [("A", "sma_3", i, T0_MS + i, 1.0, 1.0, 1, False, s) for i, s in enumerate(statuses)],
        schema=frames.COMPARISON,
        orient="row",
    )


def test_reconciliation_verdicts() -> None:
    before = comparison(["ok", "missing", "wrong", "duplicate"])
    clear = reconcile.Reconciliation(case(), before, comparison(["ok"] * 4), 2, 0, "newest event time")
    assert clear.verdict().startswith("## All clear")
    assert clear.results()["alert"] is False and clear.results()["discrepancies_as_published"] == 2
    assert clear.counts().filter(pl.col("status") == "missing").row(0) == ("missing", 1, 0)
    alert = reconcile.Reconciliation(case(), before, before, 0, 1, "newest event time")
    assert alert.alert and alert.results()["discrepancies"] == 2
    text = alert.verdict()
    assert text.startswith("## Discrepancies above the threshold") and "(threshold 1)" in text
    assert f"-p from_time {T0_MS} -p to_time {T0_MS + 600_000}" in text
    tolerated = reconcile.Reconciliation(case(), before, before, 0, 5, "newest event time")
    assert not tolerated.alert and tolerated.verdict().startswith("## Discrepancies within the threshold")


# ---------------------------------------------------------------- review


@pytest.fixture
def fixset_dir(tmp_path: Path) -> Path:
    fixset = build_fixset(
        comparison(["ok", "missing", "wrong"]),
        spec=SPEC,
        incident="inc-1",
        from_ms=T0_MS,
        to_ms=T0_MS + 600_000,
        parameters={},
        sources={},
    )
    return write_fixset(fixset, tmp_path / "fix")


def digest_of(directory: Path) -> str:
    return (directory / "digest.sha256").read_text().split()[0]


def test_a_dry_run_of_an_unapproved_fix_set_is_allowed(fixset_dir: Path) -> None:
    text = review.check_release(str(fixset_dir))
    assert "**not approved**" in text and "dry run: nothing is written" in text
    assert "2 upserts and 0 retractions for missing 1, wrong 1" in text


def test_publishing_needs_the_approved_digest(fixset_dir: Path) -> None:
    with pytest.raises(ConfigError, match="publishing needs approved_digest"):
        review.check_release(str(fixset_dir), dry_run=False)
    with pytest.raises(ApprovalError, match="is not approved"):
        review.check_release(str(fixset_dir), approved_digest=digest_of(fixset_dir), dry_run=False)


def test_a_mismatched_digest_or_reviewer_is_refused(fixset_dir: Path) -> None:
    from recovery.fixes.fixset import load_fixset

    write_approval(fixset_dir, new_approval(load_fixset(fixset_dir), "alice"))
    with pytest.raises(ApprovalError, match="refusing: approved_digest 000000000000... is not the digest"):
        review.check_release(str(fixset_dir), approved_digest="0" * 64)
    with pytest.raises(ApprovalError, match="approved by alice, not by bob"):
        review.check_release(str(fixset_dir), approved_digest=digest_of(fixset_dir), reviewer="bob", dry_run=False)
    text = review.check_release(str(fixset_dir), approved_digest=digest_of(fixset_dir), reviewer="alice", dry_run=False)
    assert "approved by **alice**" in text and "exactly once" in text
