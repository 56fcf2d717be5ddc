"""Events in a team's own layout ([events]): nested JSON, time units, composite keys, optional seq and id."""

from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.errors import SpecError
from recovery.formats import EventsSpec, parse_path
from recovery.frames import RECORDS, events_schema
from recovery.records.validate import validate
from recovery.spec import PipelineSpec, load_spec

SENSORS = EventsSpec(
    key=("device.site", "device.id"),
    time="reading.at",
    time_unit="s",
    seq=None,
    id=None,
    values={"temperature": "reading.temp_c", "humidity": "reading.rh"},
)


def _records(values: list[bytes | None], timestamps: list[int] | None = None) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame(
        {
            "partition": [0] * n,
            "offset": list(range(n)),
            "timestamp_ms": timestamps or [1_000] * n,
            "key": [None] * n,
            "value": values,
        },
        schema=RECORDS,
    )


def _sensor(site: str, device: int, at: float, temp: float, rh: float = 40.0) -> bytes:
    return json.dumps(
        {"device": {"site": site, "id": device}, "reading": {"at": at, "temp_c": temp, "rh": rh}}
    ).encode()


def test_nested_fields_seconds_and_a_composite_key_become_canonical_events() -> None:
    values = [_sensor("lyon", 7, 1767600000.25, -3.5), _sensor("lyon", 8, 1767600001, 21.0, 55.5)]
    events, quarantine = validate(_records(values), SENSORS)
    expected = pl.DataFrame(
        {
            "partition": [0, 0],
            "offset": [0, 1],
            "timestamp_ms": [1_000, 1_000],
            "event_id": [hashlib.blake2b(v, digest_size=16).hexdigest() for v in values],
            "key": ["lyon|7", "lyon|8"],
            "seq": [None, None],
            "ts": [1767600000250, 1767600001000],
            "temperature": [-3.5, 21.0],
            "humidity": [40.0, 55.5],
        },
        schema=events_schema(("temperature", "humidity")),
    )
    assert_frame_equal(events, expected)
    assert quarantine.height == 0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"device": {"site": "lyon"}, "reading": {"at": 1, "temp_c": 1, "rh": 1}}', "missing field: device.id"),
        (b'{"device": {"site": "lyon", "id": 1.5}, "reading": {"at": 1, "temp_c": 1, "rh": 1}}', "wrong type"),
        (b'{"device": {"site": "lyon", "id": 1}, "reading": {"at": "x", "temp_c": 1, "rh": 1}}', "wrong type"),
        (b'{"device": {"site": "lyon", "id": 1}, "reading": {"at": 1, "temp_c": true, "rh": 1}}', "wrong type"),
        (b'{"device": {"site": "", "id": 1}, "reading": {"at": 1, "temp_c": 1, "rh": 1}}', "bad value"),
        (b'{"device": 3, "reading": {"at": 1, "temp_c": 1, "rh": 1}}', "missing field: device.site, device.id"),
        (b"[1, 2]", "not an object"),
        (b"{", "bad JSON"),
        (None, "empty value"),
    ],
)
def test_malformed_nested_events_are_quarantined_with_the_path_named(value: bytes | None, reason: str) -> None:
    events, quarantine = validate(_records([value]), SENSORS)
    assert events.height == 0
    assert quarantine.get_column("reason").item().startswith(reason)


def test_iso_times_with_and_without_a_zone() -> None:
    layout = EventsSpec(key=("k",), time="at", time_unit="iso", seq="n", id="id", values={"x": "x"})
    values = [
        b'{"k": "a", "at": "2026-01-05T09:00:00.123Z", "n": 1, "id": "e1", "x": 1}',
        b'{"k": "a", "at": "2026-01-05T10:00:00+01:00", "n": 2, "id": "e2", "x": 2}',
        b'{"k": "a", "at": "2026-01-05T09:00:01", "n": 3, "id": "e3", "x": 3}',
        b'{"k": "a", "at": "yesterday", "n": 4, "id": "e4", "x": 4}',
    ]
    events, quarantine = validate(_records(values), layout)
    nine = 1767603600000  # 2026-01-05T09:00:00Z
    assert events.get_column("ts").to_list() == [nine + 123, nine, nine + 1000]
    assert quarantine.get_column("reason").to_list() == ["bad value: at is not ISO-8601: 'yesterday'"]


def test_event_time_from_the_kafka_timestamp() -> None:
    layout = EventsSpec(key=("k",), time=None, time_from="kafka", seq=None, id="id", values={"x": "x"})
    events, _ = validate(_records([b'{"k": "a", "id": "1", "x": 2.5}'], timestamps=[1234]), layout)
    assert events.select("ts", "x").row(0) == (1234, 2.5)


def test_negative_values_are_refused_only_where_the_layout_says_so() -> None:
    free = EventsSpec(key=("k",), time="t", seq=None, id="id", values={"amount": "amount"})
    strict = EventsSpec(key=("k",), time="t", seq=None, id="id", values={"amount": "amount"}, non_negative=("amount",))
    record = _records([b'{"k": "a", "t": 5, "id": "r1", "amount": -12.5}'])
    assert validate(record, free)[0].get_column("amount").to_list() == [-12.5]
    assert validate(record, strict)[1].get_column("reason").to_list() == ["bad value: amount is negative"]


def test_a_field_name_with_a_dot_is_quoted() -> None:
    assert parse_path("['a.b'].c", "x") == ("a.b", "c")
    assert parse_path("a.b", "x") == ("a", "b")
    with pytest.raises(SpecError, match="ends with a dot"):
        parse_path("a.", "x")


SPEC = """
[topics]
raw = "orders"
output = "orders.revenue"
corrections = "orders.revenue.fix"
audit = "orders.audit"

[events]
key = ["merchant", "region"]
time = "created_at"
time_unit = "iso"
id = "order_id"
values = { amount = "total.amount", items = "total.items" }

[outputs]
key = ["merchant", "region"]
window_end = "window_end"
window_unit = "iso"
metrics = { revenue = "revenue", orders = "orders" }
emit = "updates"

[[metrics]]
name = "revenue"
kind = "mean"
field = "amount"
window_ms = 300_000
"""


def test_a_spec_with_events_and_outputs_round_trips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "orders.toml"
    path.write_text(
        SPEC.replace('metrics = { revenue = "revenue", orders = "orders" }', 'metrics = { revenue = "revenue" }')
    )
    spec = load_spec(path)
    assert spec.value_fields == ("amount", "items")
    assert spec.layout.key == ("merchant", "region")
    assert spec.layout.seq is None
    again = PipelineSpec.from_dict(spec.to_dict())
    assert again.to_dict() == spec.to_dict()
    assert again.digest() == spec.digest()
    assert "fields" not in spec.to_dict()


def test_outputs_naming_an_unknown_metric_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "orders.toml"
    path.write_text(SPEC)
    with pytest.raises(SpecError, match="unknown metric.*orders"):
        load_spec(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"values": {}}, "values must map"),
        ({"values": {"ts": "x"}}, "cannot name a value column"),
        ({"time_unit": "minutes"}, "time_unit must be one of"),
        ({"format": "xml"}, "format must be one of"),
        ({"format": "avro"}, "needs a schema source"),
        ({"time_from": "kafka"}, "takes no time field"),
        ({"non_negative": ["nope"]}, "unknown value column"),
    ],
)
def test_bad_events_tables_are_refused(change: dict, message: str) -> None:  # type: ignore[type-arg]
    table = {"key": "k", "time": "t", "values": {"x": "x"}, **change}
    if change.get("time_from") == "kafka":
        table["time"] = "t"
    with pytest.raises(SpecError, match=message):
        EventsSpec.from_table(table)


def test_a_metric_on_a_value_column_the_events_lack_is_refused() -> None:
    data = {
        "events": {"key": "k", "time": "t", "values": {"x": "x"}},
        "metrics": [{"name": "m", "kind": "mean", "field": "price", "window_ms": 1000}],
    }
    with pytest.raises(SpecError, match="field must be one of x, got .price."):
        PipelineSpec.from_dict(data)


def test_fields_and_events_together_are_refused() -> None:
    data = {
        "fields": {},
        "events": {"key": "k", "time": "t", "values": {"price": "p"}},
        "metrics": [{"name": "m", "kind": "sma", "n": 2}],
    }
    with pytest.raises(SpecError, match="not both"):
        PipelineSpec.from_dict(data)


def test_todays_spec_is_unchanged_by_the_layouts() -> None:
    spec = load_spec("pipeline.toml")
    assert set(spec.to_dict()) == {"topics", "fields", "metrics"}
    assert spec.layout.is_flat_legacy
    assert spec.value_fields == ("price", "volume")


def test_the_readme_spec_of_a_team_pipeline_loads() -> None:
    import re
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme[readme.index("## Recover your own pipeline") :]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    spec = PipelineSpec.from_dict(tomllib.loads(block.group(1)))
    assert spec.metric_names == ["revenue_5m", "orders_5m"]
    assert spec.layout.key == ("shop.merchant", "shop.region")
    assert spec.outputs.metrics == {"revenue_5m": "revenue", "orders_5m": "orders"}
