"""Consumer-group replay: the same command on several machines splits a topic's partitions.

Each member joins ``group``, replays the partitions the group assigns it (bounded exactly like
:func:`recovery.replay.bounded.replay`) and writes their Parquet parts to its ``out_dir``. When a partition is
complete the member commits the partition's end offset to the group with a run tag as metadata: that
commit is the "done" mark. A partition taken away by a rebalance before it is done is dropped by its
member and replayed by the new owner. Members leave when every partition of the run is marked done.

Combining the results: the parts of all members together are the replay. Put them in one directory
(a shared filesystem, or copy each member's ``out_dir`` into one place) and pass that directory, or the
list of member directories, as a file source (``--source-raw DIR`` or ``FileSource([...])``). A record is
identified by (partition, offset), so a partition written twice (a member that lost it after writing)
is harmless: file sources keep one row per offset. Each member also writes ``_replay-<member>.json``
with its snapshot and the partitions it read.

Use a new group name per run (e.g. the incident id and range): a group remembers its done marks.
Every member must plan the same bounds: that holds for a closed range (``to + slack`` already in the past)
or explicit offsets; for an open range each member's snapshot bounds the partitions it read.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import kafka.errors as kerr
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import OffsetAndMetadata

from recovery.errors import BrokerError
from recovery.formats import EventsSpec
from recovery.kafka.client import DEFAULT_CLIENT
from recovery.kafka.clients import admin, guarded, new_consumer
from recovery.replay.bounded import (
    PartitionJob,
    PartitionRead,
    ReplayResult,
    prepare_out_dir,
    run_partition,
    write_sidecar,
)
from recovery.replay.plan import Snapshot, plan
from recovery.replay.progress import PartitionProgress, progress_enabled
from recovery.replay.readers import ParquetSink, reader_for
from recovery.source import KafkaSource
from recovery.spec import FieldsSpec

TAG_PREFIX = "recovery-replay:"
POLL_MS = 500
SESSION_TIMEOUT_MS = 15_000  # a member that dies loses its partitions to the others after this long


class _Revoked(Exception):
    """The partition being replayed was assigned to another member."""


def run_tag(snapshot: Snapshot) -> str:
    """Commit metadata naming this run (topic, range, lookback), so marks of other runs do not count."""
    key = {k: v for k, v in snapshot.to_dict().items() if k != "partitions"}
    key["partitions"] = [p.partition for p in snapshot.partitions]
    key["source"] = {"topic": snapshot.source.get("topic")}
    return TAG_PREFIX + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


class _Listener(ConsumerRebalanceListener):
    """Pauses every assigned partition: the member never fetches, it only holds the assignment."""

    def __init__(self) -> None:
        self.consumer: Any = None
        self.generation = 0

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.generation += 1

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.generation += 1
        if assigned:
            self.consumer.pause(*assigned)


class _GroupProgress:
    """Forwards progress and keeps the membership alive; raises :class:`_Revoked` when the partition moves."""

    def __init__(self, bars: PartitionProgress, member: Any, tp: TopicPartition) -> None:
        self.bars, self.member, self.tp = bars, member, tp

    def update(self, partition: int, done: int, total: int) -> None:
        self.bars.update(partition, done, total)
        self.member.poll(timeout_ms=0)
        if self.tp not in self.member.assignment():
            raise _Revoked()


def replay_group(
    source: KafkaSource,
    *,
    group: str,
    out_dir: Path,
    from_ms: int | None,
    to_ms: int | None,
    offsets: Mapping[int, tuple[int | None, int | None]] | None,
    fields: FieldsSpec | EventsSpec | None,
    lookback_ms: int,
    lookback_events: int,
    slack_ms: int,
    partitions: Sequence[int] | None,
    expect_members: int = 1,
    quiet: bool = False,
    batch_records: int = 200_000,
    client: str = DEFAULT_CLIENT,
) -> ReplayResult:
    """Replay as one member of ``group``; returns what this member read (its parts are in ``out_dir``)."""
    started = time.monotonic()
    settings, topic = source.settings, source.topic
    snapshot = plan(
        source,
        from_ms=from_ms,
        to_ms=to_ms,
        offsets=offsets,
        lookback_ms=lookback_ms,
        lookback_events=lookback_events,
        slack_ms=slack_ms,
        partitions=partitions,
    )
    plans = {p.partition: p for p in snapshot.partitions}
    directory = prepare_out_dir(out_dir, shared=True)
    tag = run_tag(snapshot)
    member_name = f"{socket.gethostname()}-{time.time_ns() % 10**9:09d}"
    job = PartitionJob(source, from_ms, lookback_events, fields, str(directory), batch_records, topic, client, to_ms)
    listener = _Listener()
    member = new_consumer(
        settings,
        group_id=group,
        client_id=f"recovery-replay-{member_name}",
        isolation_level=source.isolation_level,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=1_000,
    )
    listener.consumer = member
    reads: dict[int, PartitionRead] = {}
    reader = reader_for(source, client)
    try:
        member.subscribe([topic], listener=listener)
        with admin(settings) as adm, PartitionProgress(topic, enabled=progress_enabled(quiet)) as bars:
            while True:
                guarded(settings, f"polling group {group}", lambda: member.poll(timeout_ms=POLL_MS))
                done = _done(adm, settings, group, topic, tag)
                if set(plans) <= done:
                    break
                if expect_members > 1 and _members(adm, settings, group) < expect_members:
                    continue
                if len(member.assignment()) > -(-len(plans) // max(expect_members, 1)):
                    continue  # still holding the assignment from before the others joined: wait for the rebalance
                for tp in sorted(member.assignment(), key=lambda t: t.partition):
                    p = tp.partition
                    if p not in plans or p in done or p in reads:
                        continue
                    sink = ParquetSink(job.out_dir or "", job.label)
                    try:
                        read = run_partition(reader, plans[p], job, sink, _GroupProgress(bars, member, tp))
                    except _Revoked:
                        sink.discard()
                        continue
                    try:
                        end = OffsetAndMetadata(plans[p].end, tag, -1)
                        guarded(settings, f"committing {topic}[{p}]", lambda: member.commit({tp: end}))  # noqa: B023
                    except BrokerError as exc:
                        if not isinstance(exc.__cause__, kerr.CommitFailedError | kerr.RebalanceInProgressError):
                            raise
                        continue  # the partition moved on: its new owner replays it (same parts)
                    reads[p] = read
    finally:
        reader.close()
        member.close()
    result = ReplayResult(
        snapshot,
        dict(sorted(reads.items())),
        None,
        directory,
        time.monotonic() - started,
        members={"group": group, "member": member_name, "tag": tag, "partitions": sorted(reads)},
    )
    write_sidecar(directory, result, name=f"_replay-{member_name}.json")
    return result


def _done(adm: Any, settings: Any, group: str, topic: str, tag: str) -> set[int]:
    """Partitions of ``topic`` that some member of ``group`` marked done for this run."""
    offsets = guarded(settings, f"reading the offsets of group {group}", lambda: adm.list_group_offsets({group: None}))
    marks = offsets.get(group, {}) if isinstance(offsets, dict) else {}
    return {tp.partition for tp, om in marks.items() if tp.topic == topic and om is not None and om.metadata == tag}


def _members(adm: Any, settings: Any, group: str) -> int:
    described = guarded(settings, f"describing group {group}", lambda: adm.describe_groups([group]))
    info = described.get(group, {}) if isinstance(described, dict) else {}
    return len(info.get("members", []) or [])
