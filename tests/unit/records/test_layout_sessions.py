"""Output layouts of sessions and count windows on one topic (the Quix Streams example's): a session's start
and its end as the framework writes it (last event, + 1 ms, + gap), a count window named by its event's time
under another path; decoded to results and corrections encoded back the same way."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from recovery.errors import SpecError
from recovery.frames import CORRECTIONS, RECORDS
from recovery.records.layout_outputs import OutputLayout
from recovery.spec import PipelineSpec

GAP = 30_000


def _spec(session_end: str = "exclusive", **outputs: Any) -> PipelineSpec:
    table = {
        "key": ["device.site", "device.id"],
        "window": "session.start",
        "window_end": "session.end",
        "session_end": session_end,
        "windows": {"avg_temp": "at"},
        "window_unit": "s",
        "metrics": {"max_temp": "max_temp_c", "readings": "readings", "avg_temp": "avg_temp_c"},
        "retraction": "flag",
        **outputs,
    }
    session = {"window": "session", "gap_ms": GAP, "grace_ms": 5_000}
    return PipelineSpec.from_dict(
        {
            "events": {
                "key": ["device.site", "device.id"],
                "time": "reading.at",
                "time_unit": "s",
                "values": {"temp_c": "reading.temp_c"},
            },
            "outputs": table,
            "metrics": [
                {"name": "max_temp", "aggregation": "max", "field": "temp_c", **session},
                {"name": "readings", "aggregation": "count", **session},
                {
                    "name": "avg_temp",
                    "aggregation": "mean",
                    "field": "temp_c",
                    "window": "count",
                    "n": 5,
                    "partial": False,
                },
            ],
        }
    )


SESSION = {
    "device": {"id": "d-1", "site": "lyon"},
    "session": {"start": 1767600000.25, "end": 1767600042.001},
    "max_temp_c": 23.5,
    "readings": 9,
}
MOVING = {"device": {"id": "d-1", "site": "lyon"}, "at": 1767600042.0, "avg_temp_c": 21.25}


def _records(*docs: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(
        [(0, i, 0, b"lyon|d-1", json.dumps(d).encode()) for i, d in enumerate(docs)], schema=RECORDS, orient="row"
    )


@pytest.mark.parametrize(
    ("session_end", "last_ms"), [("exclusive", 1767600042000), ("last", 1767600042001), ("gap", 1767600042001 - GAP)]
)
def test_a_session_record_decodes_to_its_start_and_last_event(session_end: str, last_ms: int) -> None:
    outputs, bad = OutputLayout(_spec(session_end)).decode(_records(SESSION))
    assert bad.height == 0
    assert sorted(outputs.select("metric", "window", "time_ms", "value").rows()) == [
        ("max_temp", 1767600000250, last_ms, 23.5),
        ("readings", 1767600000250, last_ms, 9.0),
    ]


def test_a_count_window_without_seq_is_named_by_its_event_time_under_its_own_path() -> None:
    outputs, bad = OutputLayout(_spec()).decode(_records(MOVING))
    assert bad.height == 0
    assert outputs.select("key", "metric", "window", "time_ms", "value").rows() == [
        ("lyon|d-1", "avg_temp", 1767600042000, 1767600042000, 21.25)
    ]


def test_corrections_are_written_back_as_the_app_writes_its_records() -> None:
    corrections = pl.DataFrame(
        [
            ("lyon|d-1", "readings", 1767600000250, 1767600042000, "upsert", 9.0, "wrong"),
            ("lyon|d-1", "avg_temp", 1767600042000, 1767600042000, "upsert", 21.25, "missing"),
            ("lyon|d-1", "max_temp", 1767600100000, 1767600100000, "retract", None, "extra"),
        ],
        schema=CORRECTIONS,
        orient="row",
    )
    encoded = OutputLayout(_spec()).encode(corrections)
    docs = [json.loads(v) for _, v in encoded if v is not None]
    assert [k for k, _ in encoded] == [b"lyon|d-1"] * 3
    assert docs[0] == {
        "device": {"site": "lyon", "id": "d-1"},
        "session": {"start": 1767600000.25, "end": 1767600042.001},
        "readings": 9.0,
    }
    assert docs[1] == {"device": {"site": "lyon", "id": "d-1"}, "at": 1767600042, "avg_temp_c": 21.25}
    assert docs[2]["retracted"] is True and docs[2]["session"] == {"start": 1767600100, "end": 1767600100.001}


def test_a_session_whose_records_hold_no_start_is_refused() -> None:
    with pytest.raises(SpecError, match="is a session: its records must hold its start"):
        _spec(window=None)


def test_an_unknown_session_end_is_refused() -> None:
    with pytest.raises(SpecError, match="session_end must be one of"):
        _spec("inclusive")


def test_the_outputs_lookback_round_trips_and_moves_the_outputs_read_start() -> None:
    from recovery.pipeline.steps import outputs_from_ms

    spec = _spec(lookback_ms=600_000)
    assert PipelineSpec.from_dict(spec.to_dict()).outputs.lookback_ms == 600_000
    assert outputs_from_ms(spec, 1_767_600_000_000) == 1_767_599_400_000
    assert outputs_from_ms(_spec(), 1_767_600_000_000) == 1_767_600_000_000


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_a_bad_outputs_lookback_is_refused(bad: object) -> None:
    with pytest.raises(SpecError, match="lookback_ms must be an integer >= 0"):
        _spec(lookback_ms=bad)
