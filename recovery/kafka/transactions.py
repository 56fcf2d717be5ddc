"""Open transactions on a topic, through Kafka's Admin API (DescribeProducers, ListTransactions,
DescribeTransactions; KIP-664, the API behind Kafka's own ``kafka-transactions.sh``).

A transaction that is open on a partition holds back every ``read_committed`` reader of that partition at
its first offset until it commits or aborts, or the broker aborts it after its ``transaction.timeout.ms``.
One still open past its timeout is hanging.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka import TopicPartition

from recovery.config import KafkaSettings
from recovery.kafka.clients import admin, guarded
from recovery.kafka.topics import partitions_for
from recovery.timerange import now_ms

OPEN_STATES = ("Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence")


@dataclass(frozen=True)
class OpenTransaction:
    """A transaction open on one partition of a topic."""

    topic: str
    partition: int
    producer_id: int
    producer_epoch: int
    first_offset: int  # read_committed readers of the partition stop before this offset
    transactional_id: str | None  # None when no coordinator lists the producer id
    state: str | None
    age_ms: int | None  # since the coordinator started the transaction
    timeout_ms: int | None

    @property
    def hanging(self) -> bool:
        """Open past its timeout, or unknown to every coordinator (the broker will not end it by itself)."""
        if self.transactional_id is None:
            return True
        return self.age_ms is not None and self.timeout_ms is not None and self.age_ms > self.timeout_ms

    def line(self) -> str:
        """One line for ``recovery kafka status``."""
        who = self.transactional_id or f"producer id {self.producer_id} (no coordinator knows it)"
        age = "" if self.age_ms is None else f", open {self.age_ms / 1000:.0f} s"
        timeout = "" if self.timeout_ms is None else f" of its {self.timeout_ms / 1000:.0f} s timeout"
        flag = "HANGING: " if self.hanging else ""
        return (
            f"{flag}{self.topic}[{self.partition}] from offset {self.first_offset}: {who} "
            f"({self.state or 'unknown state'}{age}{timeout})"
        )


def open_transactions(settings: KafkaSettings, topic: str) -> list[OpenTransaction]:
    """The transactions open on ``topic``'s partitions, with their transactional id, age and timeout."""
    tps = [TopicPartition(topic, p) for p in partitions_for(settings, topic)]
    action = f"describing the transactions on {topic}"
    with admin(settings) as client:
        producers = guarded(settings, action, lambda: client.describe_producers(tps))
        active = [
            (tp, p)
            for tp, state in sorted(producers.items(), key=lambda item: item[0].partition)
            for p in state.active_producers
            if p.current_transaction_start_offset >= 0
        ]
        if not active:
            return []
        ids = {p.producer_id for _, p in active}
        listed = guarded(
            settings,
            action,
            lambda: client.list_transactions(producer_id_filters=sorted(ids)),
        )
        by_producer = {t.producer_id: t.transactional_id for rows in listed.values() for t in rows}
        named = sorted({by_producer[i] for i in ids if i in by_producer})
        described = guarded(settings, action, lambda: client.describe_transactions(named)) if named else {}
    now = now_ms()
    found = []
    for tp, p in active:
        tid = by_producer.get(p.producer_id)
        d = described.get(tid) if tid is not None else None
        found.append(
            OpenTransaction(
                topic=topic,
                partition=tp.partition,
                producer_id=p.producer_id,
                producer_epoch=p.producer_epoch,
                first_offset=p.current_transaction_start_offset,
                transactional_id=tid,
                state=None if d is None else str(d.state.value),
                age_ms=None if d is None or d.transaction_start_time_ms < 0 else now - d.transaction_start_time_ms,
                timeout_ms=None if d is None else d.transaction_timeout_ms,
            )
        )
    return found
