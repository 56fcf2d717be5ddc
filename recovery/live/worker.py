"""The live worker: consume raw events in a consumer group, keep window state, publish results at least once.

Per polled batch and partition: parse every record (malformed ones are skipped and counted), run the
shared window maths (:class:`recovery.metrics.windows.LiveState`), publish the results with the idempotent
producer, wait for the acknowledgements, then commit the consumed offsets. A crash therefore never loses
an output silently: what was not committed is processed again (at least once).

``until_end`` bounds a run by the raw topic's end offsets snapshotted at start and drains the assigned
partitions one at a time, in partition order, so a run (and a fault injected at a given offset) is
reproducible; :func:`emulate_live` replays exactly that behaviour in memory, which is how the simulator
predicts what the output topic holds. Without ``until_end`` the worker runs until SIGTERM/SIGINT.

The fault hooks of :mod:`recovery.live.hooks` (a crash at a raw offset, a bad deployment on an event-time
range) are applied here, deterministically, for the simulator and the tests.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata

from recovery.config import KafkaSettings
from recovery.errors import BrokerError
from recovery.kafka.clients import guarded, new_consumer, new_producer
from recovery.kafka.topics import partitions_for
from recovery.live.hooks import BugHook, CrashHook
from recovery.live.state import LiveStats, Processor, emulate_live, parse_records
from recovery.records.outputs import encode_results
from recovery.spec import PipelineSpec

__all__ = ["BugHook", "CrashHook", "LiveStats", "LiveWorker", "Processor", "emulate_live", "parse_records", "run_live"]

log = logging.getLogger("recovery.live.worker")

DEFAULT_GROUP = "recovery-live"
POLL_TIMEOUT_MS = 500
MAX_POLL_RECORDS = 5000
PROGRESS_EVERY_S = 5.0
# Outputs are flushed (and acknowledged) once per polled batch, so linger only groups a batch's sends.
PRODUCER_CONFIG: dict[str, Any] = {
    "linger_ms": 5,
    "batch_size": 512 * 1024,
    "compression_type": "gzip",
    "client_id": "recovery-live",
}
# A killed member's partitions move on after this (static members with the same instance id come back at once).
SESSION_TIMEOUT_MS = 10_000


# The worker


class _Rebalances(ConsumerRebalanceListener):
    """Records revocations; the worker applies them between batches (callbacks run on the IO loop)."""

    def __init__(self, worker: LiveWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        # Everything processed was committed after its outputs were acknowledged: nothing to flush here.
        with self.worker.lock:
            self.worker.revoked.update(tp.partition for tp in revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self.worker.until_end and assigned:
            self.worker.consumer.pause(*assigned)  # resumed one at a time by _drain_one_at_a_time
        parts = sorted(tp.partition for tp in assigned)
        log.info("%s: assigned %s%s", self.worker.stats.worker, self.worker.spec.topics.raw, parts)
        with self.worker.lock:
            self.worker.seen_partitions.update(parts)


class LiveWorker:
    """One consumer-group member of the live pipeline (use :func:`run_live`)."""

    def __init__(
        self,
        settings: KafkaSettings,
        spec: PipelineSpec,
        *,
        group: str = DEFAULT_GROUP,
        until_end: bool = False,
        crash: CrashHook | None = None,
        bugs: Sequence[BugHook] = (),
        worker_id: str | None = None,
        instance_id: str | None = None,
        max_poll_records: int = MAX_POLL_RECORDS,
        kill: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.group = group
        self.until_end = until_end
        self.crash = crash
        self.max_poll_records = max_poll_records
        self.instance_id = instance_id
        self.processor = Processor(spec, bugs)
        self.stats = self.processor.stats
        tags = "".join(f"+bug-{b.kind}" for b in bugs)
        self.stats.worker = (worker_id or f"{socket.gethostname()}:{os.getpid()}") + tags
        self.kill = kill or _sigkill_self
        self.seen_partitions: set[int] = set()
        self.lock = threading.Lock()
        self.revoked: set[int] = set()  # revoked since the last batch (set by the rebalance listener)
        self.verify: set[int] = set()  # re-assigned to us: keep state only if nobody else moved them on
        self.last_committed: dict[int, int] = {}
        self.stopping = False
        self._partition_of_key: dict[str, int] = {}

    # -- publishing ------------------------------------------------------------------------------------

    def _output_partition(self, key: str) -> int:
        # the default partitioner's choice, computed once per key (murmur2 in pure Python is slow)
        part = self._partition_of_key.get(key)
        if part is None:
            part = (murmur2(key.encode()) & 0x7FFFFFFF) % self.output_partitions
            self._partition_of_key[key] = part
        return part

    def _publish(self, results: pl.DataFrame) -> list[Any]:
        if results.height == 0:
            return []
        topic = self.spec.topics.output
        values = encode_results(results, self.stats.worker)
        futures = []
        for value, key, time_ms in zip(
            values, results.get_column("key").to_list(), results.get_column("time_ms").to_list(), strict=True
        ):
            futures.append(
                self.producer.send(
                    topic,
                    key=key.encode(),
                    value=value,
                    partition=self._output_partition(key),
                    timestamp_ms=max(time_ms, 0),
                )
            )
        self.stats.outputs += len(futures)
        return futures

    def _acknowledged(self, futures: list[Any]) -> None:
        guarded(self.settings, f"publishing to {self.spec.topics.output}", lambda: self.producer.flush())
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            raise BrokerError(
                f"{len(failed)} output record(s) to {self.spec.topics.output} were not acknowledged: "
                f"{failed[0].exception!r}",
                hint="offsets were not committed; restart the worker to process those events again",
            )

    def _commit(self, partition: int, next_offset: int) -> None:
        tp = TopicPartition(self.spec.topics.raw, partition)
        guarded(
            self.settings,
            f"committing {tp.topic}[{partition}]",
            lambda: self.consumer.commit({tp: OffsetAndMetadata(next_offset, "", -1)}),
        )
        self.last_committed[partition] = next_offset
        self.stats.commits += 1

    def _apply_rebalances(self) -> None:
        """Drop the state of partitions that moved to another member; re-check the ones that came back."""
        with self.lock:
            revoked, self.revoked = self.revoked, set()
        if not revoked:
            return
        owned = {tp.partition for tp in self.consumer.assignment()}
        lost = sorted(revoked - owned)
        if lost:
            log.info("%s: partitions %s moved away, dropping their state", self.stats.worker, lost)
            self.processor.state.forget_partitions(lost)
            for p in lost:
                self.last_committed.pop(p, None)
        self.verify |= revoked & owned

    def _check_continuity(self, partition: int, first_offset: int) -> None:
        """Keep a re-assigned partition's state only if its records continue where this worker committed."""
        if partition in self.verify:
            self.verify.discard(partition)
            expected = self.last_committed.get(partition)
            if expected is not None and expected != first_offset:
                log.info(
                    "%s: %s[%d] moved on elsewhere, its state starts cold",
                    self.stats.worker,
                    self.spec.topics.raw,
                    partition,
                )
                self.processor.state.forget_partitions([partition])

    def _process_and_publish(self, partition: int, records: Sequence[tuple[int, int, bytes | None]]) -> None:
        if records:
            self._acknowledged(self._publish(self.processor.process(partition, records)))

    # -- one partition's batch, with the crash hook -----------------------------------------------------

    def _handle(self, partition: int, records: list[tuple[int, int, bytes | None]]) -> None:
        crash = self.crash
        if crash is None or crash.partition != partition or records[-1][0] < crash.offset:
            self._process_and_publish(partition, records)
            self._commit(partition, records[-1][0] + 1)
            return
        before = [r for r in records if r[0] < crash.offset]  # empty once the span has started
        if before:
            self._process_and_publish(partition, before)
            self._commit(partition, before[-1][0] + 1)
        stop = crash.offset + crash.span
        if self.until_end:
            stop = min(stop, self.end_offsets.get(partition, stop))
        if crash.mode == "commit-before":
            self._commit(partition, stop)
            log.warning("%s: crash hook %s: committed before processing, SIGKILL", self.stats.worker, crash)
            self.kill()
            return
        self._process_and_publish(partition, [r for r in records if crash.offset <= r[0] < stop])
        if records[-1][0] >= stop - 1:
            log.warning("%s: crash hook %s: published, not committed, SIGKILL", self.stats.worker, crash)
            self.kill()

    # -- the loop ----------------------------------------------------------------------------------------

    def _drain_one_at_a_time(self) -> TopicPartition | None:
        """Bounded mode: fetch only the lowest assigned partition not at its end offset; returns it.

        Partitions are paused when assigned and resumed one at a time: a paused partition never holds
        fetched data that must be handed out later (which kafka-python can leave stuck after a resume).
        """
        assigned = sorted(self.consumer.assignment(), key=lambda tp: tp.partition)
        current = None
        for tp in assigned:
            if self.consumer.position(tp) < self.end_offsets.get(tp.partition, 0):
                current = tp
                break
        paused = self.consumer.paused()
        if current is not None and current in paused:
            self.consumer.resume(current)
        others = [tp for tp in assigned if tp != current and tp not in paused]
        if others:
            self.consumer.pause(*others)
        return current

    def _local_work_done(self) -> bool:
        return all(
            self.consumer.position(tp) >= self.end_offsets.get(tp.partition, 0) for tp in self.consumer.assignment()
        )

    def _group_done(self) -> bool:
        """Every partition of the raw topic committed at or past the end snapshot (by any member)."""
        for partition, end in self.end_offsets.items():
            if end == 0:
                continue
            committed = self.consumer.committed(TopicPartition(self.spec.topics.raw, partition))
            if committed is None or committed < end:
                return False
        return True

    def run(self) -> LiveStats:
        """Consume until the end snapshot (``until_end``) or until stopped; returns the counters."""
        raw = self.spec.topics.raw
        partitions = partitions_for(self.settings, raw)
        self.output_partitions = len(partitions_for(self.settings, self.spec.topics.output))
        self.consumer = new_consumer(
            self.settings,
            group_id=self.group,
            max_poll_records=self.max_poll_records,
            client_id=f"recovery-live-{self.stats.worker}",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            **({"group_instance_id": self.instance_id} if self.instance_id else {}),
        )
        self.producer = new_producer(self.settings, **PRODUCER_CONFIG)
        started = time.monotonic()
        try:
            parts = [TopicPartition(raw, p) for p in partitions]
            ends = guarded(self.settings, f"reading end offsets of {raw}", lambda: self.consumer.end_offsets(parts))
            self.end_offsets = {tp.partition: off for tp, off in ends.items()}
            self.consumer.subscribe([raw], listener=_Rebalances(self))
            if self.until_end:
                log.info("%s: bounded run to end offsets %s", self.stats.worker, self.end_offsets)
            self._loop(started)
        finally:
            self.stats.seconds = time.monotonic() - started
            self.stats.partitions = sorted(self.seen_partitions)
            try:
                self.producer.close(timeout=10)
            finally:
                self.consumer.close(autocommit=False)
        return self.stats

    def _loop(self, started: float) -> None:
        raw = self.spec.topics.raw
        last_report = started
        while not self.stopping:
            current = self._drain_one_at_a_time() if self.until_end else None
            batch = guarded(
                self.settings,
                f"polling {raw}",
                lambda: self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=self.max_poll_records),
            )
            self._apply_rebalances()
            for tp in sorted(batch, key=lambda tp: tp.partition):
                if self.until_end and tp != current:  # not its turn yet: hand the records back
                    self.consumer.seek(tp, batch[tp][0].offset)
                    continue
                end = self.end_offsets.get(tp.partition, 0) if self.until_end else None
                records = [(r.offset, r.timestamp, r.value) for r in batch[tp] if end is None or r.offset < end]
                if records:
                    self._check_continuity(tp.partition, records[0][0])
                    self._handle(tp.partition, records)
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                log.info(
                    "%s: %s records (%.0f/s), %d malformed, %d late, %d outputs",
                    self.stats.worker,
                    self.stats.records,
                    self.stats.records / (now - started),
                    self.stats.malformed_total,
                    self.stats.late_events,
                    self.stats.outputs,
                )
            if self.until_end and self._local_work_done() and self._group_done():
                return


def _sigkill_self() -> None:
    logging.shutdown()
    os.kill(os.getpid(), signal.SIGKILL)


def run_live(
    settings: KafkaSettings,
    spec: PipelineSpec,
    *,
    group: str = DEFAULT_GROUP,
    until_end: bool = False,
    crash: CrashHook | None = None,
    bugs: Sequence[BugHook] = (),
    worker_id: str | None = None,
    instance_id: str | None = None,
    max_poll_records: int = MAX_POLL_RECORDS,
) -> LiveStats:
    """Run one live worker (a member of consumer group ``group``); returns its counters.

    Continuous unless ``until_end``; SIGTERM and SIGINT stop it after the current batch (outputs flushed,
    offsets committed). ``instance_id`` makes it a static member: restarted with the same id, it gets its
    partitions back without waiting for the group to notice the old process is gone.
    """
    worker = LiveWorker(
        settings,
        spec,
        group=group,
        until_end=until_end,
        crash=crash,
        bugs=bugs,
        worker_id=worker_id,
        instance_id=instance_id,
        max_poll_records=max_poll_records,
    )

    def stop(signum: int, _frame: Any) -> None:
        log.info("%s: signal %d, stopping after this batch", worker.stats.worker, signum)
        worker.stopping = True

    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
    try:
        return worker.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
