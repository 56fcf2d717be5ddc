"""User-defined metrics for the tests (imported by name, as a team's own module would be)."""

from __future__ import annotations

import polars as pl


def range_per_key(events: pl.DataFrame) -> pl.DataFrame:
    """One result per event: the price range (max - min) of the key so far."""
    price = events.get_column("price")
    return pl.DataFrame(
        {
            "window": events.get_column("seq"),
            "time_ms": events.get_column("ts"),
            "value": price.cum_max() - price.cum_min(),
        }
    )


def spread(events: pl.DataFrame) -> float:
    """A window's max price minus its first one."""
    price = events.get_column("price")
    return float(price.max()) - float(price[0])  # type: ignore[arg-type]


def fails_on_b(events: pl.DataFrame) -> float:
    if events.get_column("key")[0] == "B":
        raise ValueError("no prices for B")
    return 1.0


def not_a_frame(events: pl.DataFrame) -> float:
    return 1.0
