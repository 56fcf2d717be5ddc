"""Seeded order events for the Kafka Streams example, and the faulty delivery of the same orders.

Orders of a few merchants arrive a few seconds after they were placed (less than the job's grace, so a
fault-free run counts every one). ``faulty_delivery`` is how the incident's raw topic received them: a batch
re-sent by a retrying producer (duplicates) and a stretch of orders from one merchant's offline till delivered
long after their windows closed (late).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime

START_MS = 1_767_603_600_000  # 2026-01-05T09:00:00Z, on the 15-minute grid
MEAN_GAP_MS = 2_000  # one order every 2 s on average, all merchants together
MAX_DELAY_MS = 20_000  # arrival delay of a fault-free order; the job's grace is 60 s
LATE_DELAY_MS = 12 * 60_000  # an offline till's orders arrive 12 minutes late


@dataclass(frozen=True)
class Order:
    """One order event: its JSON value, key and event time, and when it reached the topic."""

    order_id: str
    merchant: str
    seq: int
    created_ms: int
    amount: float
    arrival_ms: int

    def value(self) -> bytes:
        """The record value the job reads."""
        return json.dumps(
            {
                "order_id": self.order_id,
                "merchant": self.merchant,
                "seq": self.seq,
                "created_at": iso(self.created_ms),
                "amount": self.amount,
            },
            separators=(",", ":"),
        ).encode()


def iso(ms: int) -> str:
    """Epoch ms as ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def generate(events: int, merchants: int = 12, seed: int = 7, start_ms: int = START_MS) -> list[Order]:
    """``events`` orders in arrival order; the same seed gives the same orders."""
    rng = random.Random(seed)
    names = [f"m{i:02d}" for i in range(merchants)]
    weights = [1.0 + rng.random() * 3 for _ in names]
    seqs = dict.fromkeys(names, 0)
    at = start_ms
    orders = []
    for _ in range(events):
        at += max(1, round(rng.expovariate(1 / MEAN_GAP_MS)))
        merchant = rng.choices(names, weights)[0]
        seqs[merchant] += 1
        amount = round(rng.lognormvariate(3.2, 0.8), 2)
        delay = rng.randrange(MAX_DELAY_MS)
        orders.append(Order(f"{merchant}-{seqs[merchant]:06d}", merchant, seqs[merchant], at, amount, at + delay))
    return sorted(orders, key=lambda o: (o.arrival_ms, o.order_id))


@dataclass(frozen=True)
class Delivery:
    """The raw topic of the incident: the records in log order, and which ones are faults."""

    records: list[Order]
    duplicated: list[str]  # order ids sent twice
    late: list[str]  # order ids delivered LATE_DELAY_MS after they were placed


def faulty_delivery(orders: list[Order], seed: int = 7) -> Delivery:
    """The orders as the incident delivered them: a re-sent batch at ~72 % and a late stretch from ~45 %."""
    rng = random.Random(seed + 1)
    n = len(orders)
    merchant = orders[n // 2].merchant
    late_ids = {o.order_id for o in orders[int(n * 0.45) : int(n * 0.52)] if o.merchant == merchant}
    late = [o for o in orders if o.order_id in late_ids]
    records = [o for o in orders if o.order_id not in late_ids]
    for o in late:  # delivered after the first order placed LATE_DELAY_MS after it
        due = o.created_ms + LATE_DELAY_MS
        at = next((i for i, r in enumerate(records) if r.created_ms >= due), len(records))
        records.insert(at, o)
    first = int(len(records) * 0.72)
    batch = records[first : first + 30 + rng.randrange(20)]
    records[first + len(batch) : first + len(batch)] = batch  # the retry re-sends the whole batch
    return Delivery(records, [o.order_id for o in batch], [o.order_id for o in late])
