"""Time arguments and ranges: ISO-8601 (UTC when no zone is given) or epoch milliseconds.

A recovery works on a half-open event-time range ``[from_ms, to_ms)``. Everything that takes a range from a
user goes through :func:`parse_time_ms` and :func:`time_range`, so every step rejects the same mistakes
(a reversed range, an empty one, a range that starts in the future) with the same one-line error.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from recovery.errors import ConfigError

_EPOCH_MS = re.compile(r"^-?\d+$")
# epoch values below this look like seconds, not milliseconds (before 1973 in ms)
_MIN_PLAUSIBLE_MS = 100_000_000_000


def parse_time_ms(value: str | int, *, name: str = "time") -> int:
    """Epoch milliseconds from ``value``: an int, a string of digits (epoch ms) or ISO-8601 (UTC if no zone)."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a time, got {value!r}")
    if isinstance(value, int):
        ms = value
    else:
        text = str(value).strip()
        if _EPOCH_MS.match(text):
            ms = int(text)
        else:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
            except ValueError:
                raise ConfigError(
                    f"{name} {text!r} is neither ISO-8601 nor epoch milliseconds",
                    hint="e.g. 2026-01-01T10:00 (UTC), 2026-01-01T10:00+02:00 or 1767261600000",
                ) from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return int(round(parsed.timestamp() * 1000))
    if 0 <= ms < _MIN_PLAUSIBLE_MS:
        raise ConfigError(
            f"{name} {ms} looks like epoch seconds, not milliseconds",
            hint=f"multiply by 1000 ({ms * 1000}) or use ISO-8601",
        )
    return ms


def format_ms(ms: int) -> str:
    """ISO-8601 in UTC with milliseconds, for logs, manifests and summaries."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class TimeRange:
    """A half-open event-time range ``[from_ms, to_ms)``."""

    from_ms: int
    to_ms: int

    def __post_init__(self) -> None:
        if self.from_ms > self.to_ms:
            raise ConfigError(
                f"--from ({format_ms(self.from_ms)}) is after --to ({format_ms(self.to_ms)})",
                hint="swap the two times",
            )
        if self.from_ms == self.to_ms:
            raise ConfigError(
                f"the range [{format_ms(self.from_ms)}, {format_ms(self.to_ms)}) is empty",
                hint="--to is exclusive: give a later --to",
            )

    @property
    def duration_ms(self) -> int:
        return self.to_ms - self.from_ms

    def to_dict(self) -> dict[str, int | str]:
        return {
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
            "from": format_ms(self.from_ms),
            "to": format_ms(self.to_ms),
        }

    def __str__(self) -> str:
        return f"[{format_ms(self.from_ms)}, {format_ms(self.to_ms)})"


def time_range(from_: str | int, to: str | int, *, now: int | None = None) -> TimeRange:
    """Parse and check a user's range: ``from`` before ``to``, not empty, not starting in the future."""
    rng = TimeRange(parse_time_ms(from_, name="--from"), parse_time_ms(to, name="--to"))
    current = now_ms() if now is None else now
    if rng.from_ms > current:
        raise ConfigError(
            f"the range {rng} starts in the future (now is {format_ms(current)})",
            hint="check the date and the time zone (times without a zone are UTC)",
        )
    return rng
