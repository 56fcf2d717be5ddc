"""How times read in reports: durations in the largest sensible unit, axis labels that suit the span,
epoch-millisecond columns shown as ISO-8601 UTC.

A report covers a minute of ticks or twenty years of daily prices; the same labels cannot serve both.
Time axis labels show what changes across the span (seconds, hours, days, months or years) and the
axis title carries what does not (the date or the year).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
YEAR_MS = 365 * DAY_MS + DAY_MS // 4  # a Julian year: durations of many years read right to a tenth
ISO_COLUMN_FORMAT = "%Y-%m-%dT%H:%M:%S%.3fZ"
DURATION_UNITS: tuple[tuple[int, str, str], ...] = (
    (YEAR_MS, "year", "years"),
    (DAY_MS, "day", "days"),
    (HOUR_MS, "h", "h"),
    (MINUTE_MS, "min", "min"),
    (SECOND_MS, "s", "s"),
)
# a label of each format is this wide at the house font size (px): ticks are spaced to fit them
AXIS_WIDTH_PX = 640
LABEL_PX = {"%H:%M:%S": 60, "%H:%M": 45, "%b %d %H:%M": 90, "%b %d": 50, "%b %Y": 60, "%Y": 40}


def format_duration_ms(ms: float) -> str:
    """A duration in the largest unit that fits it at least once: ``"20.2 years"``, ``"90 min"``, ``"6.3 s"``.

    Whole values print without decimals, others with one (two below 10 s); below a second, milliseconds.
    """
    value = abs(float(ms))
    sign = "-" if ms < 0 else ""
    for unit_ms, one, many in DURATION_UNITS:
        if value >= unit_ms:
            amount = value / unit_ms
            if amount == int(amount):
                text = f"{int(amount):,}"
            else:
                text = f"{amount:,.2f}" if unit_ms == SECOND_MS and amount < 10 else f"{amount:,.1f}"
                text = text.removesuffix(".00").removesuffix(".0")
            return f"{sign}{text} {one if text == '1' else many}"
    return f"{sign}{value:,.0f} ms"


def format_seconds(seconds: float) -> str:
    """Seconds of a step's wall time, read as a duration (``"6.25 s"``, ``"2.5 min"``)."""
    return format_duration_ms(seconds * 1000)


@dataclass(frozen=True)
class AxisTime:
    """Labels of a time axis over a span: their format, how many ticks, and what the title adds."""

    label_format: str
    tick_count: int | dict[str, Any]
    context: str  # the date or year(s) the labels leave out ("" when they show everything)


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def _between(first: str, last: str) -> str:
    return first if first == last else f"{first} to {last}"


def axis_time(low_ms: int, high_ms: int, width_px: int = AXIS_WIDTH_PX) -> AxisTime:
    """The label format and tick count of a UTC time axis from ``low_ms`` to ``high_ms``."""
    span = max(0, high_ms - low_ms)
    low, high = _utc(low_ms), _utc(high_ms)
    if span <= 3 * MINUTE_MS:
        label, context = "%H:%M:%S", _between(f"{low:%Y-%m-%d}", f"{high:%Y-%m-%d}")
    elif span <= DAY_MS:
        label, context = "%H:%M", _between(f"{low:%Y-%m-%d}", f"{high:%Y-%m-%d}")
    elif span <= 4 * DAY_MS:
        label, context = "%b %d %H:%M", _between(f"{low:%Y}", f"{high:%Y}")
    elif span <= 120 * DAY_MS:
        label, context = "%b %d", _between(f"{low:%Y}", f"{high:%Y}")
    elif span <= 3 * YEAR_MS:
        label, context = "%b %Y", ""
    else:
        label, context = "%Y", ""
    fitting = max(2, min(10, width_px // (LABEL_PX[label] + 20)))
    ticks: int | dict[str, Any] = fitting
    if label == "%Y":
        years = span / YEAR_MS
        step = next((s for s in (1, 2, 5, 10, 20, 50, 100) if years / s <= fitting), 100)
        ticks = {"interval": "year", "step": step}
    elif label == "%b %Y":
        months = span / (YEAR_MS / 12)
        step = next((s for s in (1, 2, 3, 6, 12) if months / s <= fitting), 12)
        ticks = {"interval": "month", "step": step}
    return AxisTime(label, ticks, context)
