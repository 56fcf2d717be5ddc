"""Fault hooks of the live worker, for the simulator and the tests: deterministic crashes and bad deploys.

- :class:`CrashHook`: SIGKILL the worker when it reaches a raw offset, either after committing offsets for
  ``span`` records it never processed (``commit-before``: their outputs are lost) or after publishing the
  outputs of ``span`` records without committing them (``commit-after``: they are processed again after the
  restart, with cold state, so their outputs are duplicated).
- :class:`BugHook`: a bad deployment for an event-time range: the sma window one event short, or the
  price read in cents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from recovery.errors import ConfigError
from recovery.metrics.windows import SHORT_WINDOW

CrashMode = Literal["commit-before", "commit-after"]
CRASH_MODES: tuple[str, ...] = ("commit-before", "commit-after")
BugKind = Literal["short-window", "cents"]
BUG_KINDS: tuple[str, ...] = ("short-window", "cents")


@dataclass(frozen=True)
class CrashHook:
    """Kill the worker with SIGKILL when it reaches raw ``offset`` of ``partition`` (see module doc)."""

    partition: int
    offset: int
    span: int
    mode: CrashMode

    def __post_init__(self) -> None:
        if self.mode not in CRASH_MODES:
            raise ConfigError(f"unknown crash mode {self.mode!r}", hint=f"use one of {', '.join(CRASH_MODES)}")
        if self.partition < 0 or self.offset < 0 or self.span < 1:
            raise ConfigError(f"invalid crash hook {self}", hint="partition >= 0, offset >= 0, span >= 1")

    @classmethod
    def parse(cls, text: str) -> CrashHook:
        """From ``PARTITION:OFFSET:SPAN:MODE``, e.g. ``2:1500:40:commit-before``."""
        parts = text.split(":")
        if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
            raise ConfigError(f"bad crash hook {text!r}", hint="use PARTITION:OFFSET:SPAN:MODE")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]), parts[3])  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}:{self.span}:{self.mode}"


@dataclass(frozen=True)
class BugHook:
    """A bad deployment: events with ``from_ms <= ts < to_ms`` are processed with a logic bug."""

    kind: BugKind
    from_ms: int
    to_ms: int

    def __post_init__(self) -> None:
        if self.kind not in BUG_KINDS:
            raise ConfigError(f"unknown bug {self.kind!r}", hint=f"use one of {', '.join(BUG_KINDS)}")
        if self.from_ms >= self.to_ms:
            raise ConfigError(f"bug range [{self.from_ms}, {self.to_ms}) is empty")

    @classmethod
    def parse(cls, text: str) -> BugHook:
        """From ``KIND:FROM_MS:TO_MS``, e.g. ``cents:1767603600000:1767603900000``."""
        parts = text.split(":")
        if len(parts) != 3 or not all(p.lstrip("-").isdigit() for p in parts[1:]):
            raise ConfigError(f"bad bug hook {text!r}", hint="use KIND:FROM_MS:TO_MS")
        return cls(parts[0], int(parts[1]), int(parts[2]))  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.kind}:{self.from_ms}:{self.to_ms}"

    def apply(self, events: pl.DataFrame) -> pl.DataFrame:
        """The batch as the buggy version sees it."""
        hit = pl.col("ts").is_between(self.from_ms, self.to_ms, closed="left")
        if self.kind == "cents":
            return events.with_columns(pl.when(hit).then(pl.col("price") * 100).otherwise(pl.col("price")))
        return events.with_columns(hit.alias(SHORT_WINDOW))
