"""What a publish did (or, for a dry run, would do): the report the CLI and notebook 03 show."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from recovery.fixes.chunks import Progress


@dataclass
class PublishReport:
    """What a publish did (or, for a dry run, would do)."""

    digest: str
    status: str  # dry-run | published | continued | resumed | already-published
    topic: str
    corrections: int
    transactional_id: str
    reviewer: str | None = None
    offsets: dict[str, list[int]] = field(default_factory=dict)  # partition -> [first, last, records]
    verified: bool = False
    audit: dict[str, Any] | None = None  # the publish audit record
    audit_at: str | None = None  # where it is: topic[partition]@offset
    send_s: float = 0.0
    total_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    preview: pl.DataFrame | None = None
    chunks: int = 0  # transactions of corrections in the plan
    first_chunk: int = 0  # where this run started (earlier runs committed the chunks before it)
    sent: int = 0  # corrections this run sent
    progress: Progress | None = None  # the publication state before this run (dry run: now)

    @property
    def corrections_per_s(self) -> float:
        return self.sent / self.send_s if self.send_s > 0 else 0.0

    def lines(self) -> list[str]:
        """A short text report for the CLI."""
        head = {
            "dry-run": f"dry run: would publish {self.corrections:,} corrections to {self.topic}",
            "published": f"published {self.corrections:,} corrections to {self.topic} in {self.send_s:.2f} s "
            f"({self.corrections_per_s:,.0f}/s, {self.chunks} transaction(s))",
            "continued": f"continued an interrupted publish at chunk {self.first_chunk} of {self.chunks}: "
            f"sent the remaining {self.sent:,} of {self.corrections:,} corrections to {self.topic} "
            f"in {self.send_s:.2f} s",
            "resumed": f"{self.corrections:,} corrections were already committed to {self.topic} "
            "by an interrupted run: not sent again",
            "already-published": f"digest already published to {self.topic}: nothing to do",
        }[self.status]
        out = [head, f"digest {self.digest}  transactional.id {self.transactional_id}"]
        if self.verified:
            out.append("verified: every correction committed exactly once (read_committed read-back)")
        if self.audit_at:
            out.append(f"audit record: {self.audit_at}")
        if self.status == "dry-run" and self.progress is not None:
            out.append(f"publication: {self.progress.line()}")
        out.extend(self.notes)
        return out
