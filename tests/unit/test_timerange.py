"""Time arguments: ISO-8601 (UTC when no zone) or epoch milliseconds; ranges checked once for every verb."""

from __future__ import annotations

import pytest

from recovery.errors import ConfigError
from recovery.timerange import TimeRange, format_ms, parse_time_ms, time_range

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00", T0),
        ("2026-01-01", T0),
        ("2026-01-01T00:00:00Z", T0),
        ("2026-01-01T02:00+02:00", T0),
        ("2026-01-01T00:00:00.250", T0 + 250),
        (str(T0), T0),
        (T0, T0),
    ],
)
def test_times_parse_to_epoch_milliseconds(text: str | int, expected: int) -> None:
    assert parse_time_ms(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "neither ISO-8601 nor epoch milliseconds"),
        ("1767225600", "looks like epoch seconds"),
        ("2026-13-01", "neither ISO-8601"),
    ],
)
def test_bad_times_are_refused_with_a_hint(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_time_ms(text)


def test_ranges_are_half_open_and_checked() -> None:
    rng = time_range("2026-01-01T00:00", "2026-01-01T01:00", now=T0 + 10**9)
    assert (rng.from_ms, rng.duration_ms) == (T0, 3_600_000)
    assert str(rng) == "[2026-01-01T00:00:00.000Z, 2026-01-01T01:00:00.000Z)"
    with pytest.raises(ConfigError, match="is after --to"):
        TimeRange(T0 + 1, T0)
    with pytest.raises(ConfigError, match="is empty"):
        TimeRange(T0, T0)
    with pytest.raises(ConfigError, match="starts in the future"):
        time_range(str(T0), str(T0 + 1000), now=T0 - 1)
    assert format_ms(T0 + 5) == "2026-01-01T00:00:00.005Z"
