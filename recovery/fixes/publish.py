"""Publish an approved fix set exactly once to the compacted corrections topic, verify it, audit it.

Exactly once, also across crashes: all corrections of a fix set go in ONE Kafka transaction whose
``transactional.id`` is derived from the digest. Before it, a ``publish-begin`` audit record (its own
transaction) notes the corrections topic's end offsets: records of this publish can only come after them.
A rerun of the same digest starts a producer with the same id; ``init_transactions`` fences the previous
incarnation and resolves its transaction (an open one is aborted, one that was committing is completed)
before anything else happens. The rerun then reads the corrections topic with ``read_committed`` from the
earliest ``publish-begin`` offsets: if records carrying the digest are there, the earlier run committed (a
transaction is all or nothing) and nothing is sent again; if none are (or there is no begin record: no
earlier run sent anything), everything is sent in a new transaction. Either way the read-back then checks
that every correction is there exactly once with its value, and an audit record (digest, reviewer,
counts, offsets, time) is written in a last transaction. A digest with a publish audit record is a no-op.

Correction records: key ``"{key}|{metric}|{window}"`` (UTF-8), value ``{"key", "metric", "window",
"time_ms", "action", "value", "reason", "digest"}`` (JSON). A correction goes to the partition the default
partitioner gives its result key (the symbol), like the live worker's outputs: with the same partition
count, a result's outputs and corrections share a partition number, and every copy of one correction key
lands in one partition, as compaction needs.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from kafka.partitioner.default import murmur2

from recovery import __version__
from recovery.config import KafkaSettings
from recovery.errors import ApprovalError, DataError, TopicError
from recovery.fixes.approval import check_approved, load_approval
from recovery.fixes.audit import audit_record, ensure_audit_topic, read_audit
from recovery.fixes.fixset import FixSet, load_fixset
from recovery.frames import CORRECTIONS, RECORDS, conform
from recovery.kafka.client import DEFAULT_CLIENT, TxProducer, transactional_producer
from recovery.kafka.small import read_topic
from recovery.kafka.topics import ensure_topic, offsets, partitions_for, topic_config
from recovery.source import KafkaSource
from recovery.spec import PipelineSpec

# test hook: SIGKILL at after-begin | after-sends:K | before-commit | after-commit | after-verify
CRASH_ENV = "RECOVERY_PUBLISH_CRASH"
CORRECTIONS_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
PREVIEW_ROWS = 20

# A correction record read back from the corrections topic.
PUBLISHED = pl.Schema(
    [
        *CORRECTIONS.items(),
        ("digest", pl.String),
        ("record_key", pl.String),
        ("partition", pl.Int32),
        ("offset", pl.Int64),
    ]
)
_VALUE = pl.Struct(pl.Schema([*CORRECTIONS.items(), ("digest", pl.String)]))


class VerificationError(DataError):
    """The corrections read back from Kafka differ from the fix set."""


@dataclass
class PublishReport:
    """What a publish did (or, for a dry run, would do)."""

    digest: str
    status: str  # dry-run | published | resumed | already-published
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

    @property
    def corrections_per_s(self) -> float:
        return self.corrections / self.send_s if self.send_s > 0 else 0.0

    def lines(self) -> list[str]:
        """A short text report for the CLI."""
        head = {
            "dry-run": f"dry run: would publish {self.corrections:,} corrections to {self.topic}",
            "published": f"published {self.corrections:,} corrections to {self.topic} in {self.send_s:.2f} s "
            f"({self.corrections_per_s:,.0f}/s)",
            "resumed": f"{self.corrections:,} corrections were already committed to {self.topic} "
            "by an interrupted run: not sent again",
            "already-published": f"digest already published to {self.topic}: nothing to do",
        }[self.status]
        out = [head, f"digest {self.digest}  transactional.id {self.transactional_id}"]
        if self.verified:
            out.append("verified: every correction committed exactly once (read_committed read-back)")
        if self.audit_at:
            out.append(f"audit record: {self.audit_at}")
        out.extend(self.notes)
        return out


def transactional_id(digest: str) -> str:
    """The stable transactional.id of a fix set: reruns fence and resolve earlier attempts."""
    return f"recovery-publish-{digest[:40]}"


def record_key() -> pl.Expr:
    """The record key of a correction: ``key|metric|window``."""
    return pl.concat_str([pl.col("key"), pl.col("metric"), pl.col("window").cast(pl.String)], separator="|")


def partition_of(key: str, partitions: int) -> int:
    """The default partitioner's choice for a result key (Java-compatible murmur2)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def encode_corrections(
    corrections: pl.DataFrame, digest: str, partitions: int = 1
) -> tuple[list[bytes], list[bytes], list[int]]:
    """Record keys, JSON values and partitions of the corrections (built in bulk), sorted by key, metric, window."""
    frame = conform(corrections, CORRECTIONS).sort("key", "metric", "window")
    keys = frame.get_column("key").unique()
    home = pl.Series([partition_of(k, partitions) for k in keys.to_list()], dtype=pl.Int64)
    value = pl.struct([*CORRECTIONS.names(), pl.lit(digest).alias("digest")]).struct.json_encode()
    encoded = frame.select(
        record_key().cast(pl.Binary).alias("k"),
        value.cast(pl.Binary).alias("v"),
        pl.col("key").replace_strict(keys, home, return_dtype=pl.Int64).alias("p"),
    )
    return encoded.get_column("k").to_list(), encoded.get_column("v").to_list(), encoded.get_column("p").to_list()


def decode_corrections(records: pl.DataFrame) -> pl.DataFrame:
    """PUBLISHED rows from records of the corrections topic (tombstones and foreign records are skipped)."""
    frame = conform(records, RECORDS).filter(pl.col("value").is_not_null())
    if frame.height == 0:
        return pl.DataFrame(schema=PUBLISHED)
    try:
        decoded = frame.with_columns(pl.col("value").cast(pl.String).str.json_decode(_VALUE).alias("_v"))
    except pl.exceptions.PolarsError:
        decoded = frame.with_columns(
            pl.Series("_v", [_decode_one(v) for v in frame.get_column("value").to_list()], dtype=_VALUE)
        )
    out = decoded.filter(pl.col("_v").is_not_null()).select(
        pl.col("_v").struct.unnest(), pl.col("key").cast(pl.String).alias("record_key"), "partition", "offset"
    )
    return conform(out.drop_nulls(["key", "metric", "window", "action"]), PUBLISHED)


def _decode_one(value: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or "digest" not in data:
        return None
    return {name: data.get(name) for name in (*CORRECTIONS.names(), "digest")}


def read_corrections(
    settings: KafkaSettings,
    topic: str,
    *,
    digest: str | None = None,
    since: dict[int, int] | None = None,
    client: str = DEFAULT_CLIENT,
) -> pl.DataFrame:
    """Committed correction records of ``topic`` (read_committed, bounded), optionally of one digest.

    ``since`` (partition -> offset) skips what came before: a publish records the end offsets before it
    sends, and only records after them can be its own.
    """
    source = KafkaSource(topic, settings, isolation_level="read_committed")
    offsets = None if since is None else {int(p): (int(o), None) for p, o in since.items()}
    records = read_topic(source, offsets=offsets, client=client)
    if digest is not None:
        records = records.filter(pl.col("value").bin.contains(digest.encode()))
    published = decode_corrections(records)
    return published.filter(pl.col("digest") == digest) if digest is not None else published


def verify(
    settings: KafkaSettings,
    topic: str,
    fixset: FixSet,
    *,
    since: dict[int, int] | None = None,
    client: str = DEFAULT_CLIENT,
) -> dict[str, list[int]]:
    """Check that every correction of ``fixset`` is committed exactly once with its content.

    Returns per partition ``[first offset, last offset, records]``; :class:`VerificationError` otherwise.
    """
    published = read_corrections(settings, topic, digest=fixset.digest, since=since, client=client)
    expected = conform(fixset.corrections, CORRECTIONS).with_columns(record_key().alias("_rk"))
    copies = published.group_by("record_key").len()
    duplicated = copies.filter(pl.col("len") > 1).height
    joined = expected.join(
        published.unique(subset=["record_key"], keep="last").select(
            "record_key", *[pl.col(c).alias(f"_got_{c}") for c in CORRECTIONS]
        ),
        left_on="_rk",
        right_on="record_key",
        how="left",
    )
    missing = joined.filter(pl.col("_got_key").is_null()).height
    differs = pl.any_horizontal(*[pl.col(c).ne_missing(pl.col(f"_got_{c}")) for c in CORRECTIONS])
    changed = joined.filter(pl.col("_got_key").is_not_null() & differs).height
    unexpected = published.join(expected.select("_rk"), left_on="record_key", right_on="_rk", how="anti").height
    if missing or changed or duplicated or unexpected:
        raise VerificationError(
            f"read-back of {topic} for digest {fixset.digest[:12]}... differs from the fix set: "
            f"{missing} missing, {changed} with other content, {duplicated} committed more than once, "
            f"{unexpected} unexpected",
            hint="do not retry blindly: inspect the topic (a newer fix set may have compacted these keys)",
        )
    offsets = published.group_by("partition").agg(
        pl.col("offset").min().alias("first"), pl.col("offset").max().alias("last"), pl.len().alias("n")
    )
    return {str(p): [int(a), int(b), int(n)] for p, a, b, n in offsets.sort("partition").iter_rows()}


def ensure_corrections_topic(settings: KafkaSettings, spec: PipelineSpec) -> int:
    """Create the compacted corrections topic if missing (partitions as the output topic); returns partitions.

    An existing corrections topic that is not compacted is an error: a correction must supersede the last.
    """
    topic = spec.topics.corrections
    try:
        return len(_check_compacted(settings, topic))
    except _MissingTopic:
        pass
    try:
        partitions = len(partitions_for(settings, spec.topics.output))
    except TopicError:
        partitions = spec.topics.partitions
    ensure_topic(settings, topic, partitions, CORRECTIONS_CONFIG)
    return len(_check_compacted(settings, topic))


class _MissingTopic(Exception):
    pass


def _check_compacted(settings: KafkaSettings, topic: str) -> list[int]:
    try:
        parts = partitions_for(settings, topic)
    except TopicError:
        raise _MissingTopic() from None
    policy = topic_config(settings, topic).get("cleanup.policy") or ""
    if "compact" not in policy:
        raise TopicError(
            f"corrections topic {topic!r} exists with cleanup.policy={policy or 'delete'}, not compact",
            topic=topic,
            hint=f"set it with kafka-configs.sh --alter --entity-type topics --entity-name {topic} "
            "--add-config cleanup.policy=compact, or name another corrections topic in the spec",
        )
    return parts


def _crash_point(point: str) -> None:
    """Test hook: SIGKILL this process at a named point (RECOVERY_PUBLISH_CRASH)."""
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _crash_hook(tx: TxProducer) -> Callable[[int], None] | None:
    """Test hook ``after-sends:K``: after K sends, deliver them (inside the open transaction) and SIGKILL."""
    wanted = os.environ.get(CRASH_ENV, "")
    if not wanted.startswith("after-sends:"):
        return None
    count = int(wanted.split(":", 1)[1])

    def hook(sent: int) -> None:
        if sent == count:
            tx.flush()  # the records are in the log, inside the open transaction
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _audit(tx: TxProducer, topic: str, record: dict[str, Any]) -> dict[str, Any]:
    """Send an audit record inside ``tx``'s open transaction; returns where it went."""
    value = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    return tx.send_one(topic, str(record["digest"]).encode(), value)


def publish(
    directory: str | Path,
    settings: KafkaSettings,
    *,
    approved_digest: str | None = None,
    dry_run: bool = False,
    client: str = DEFAULT_CLIENT,
) -> PublishReport:
    """Publish the approved fix set in ``directory`` exactly once, verify it and write the audit record.

    ``approved_digest`` (optional) must equal the fix set's digest. ``dry_run`` writes nothing and
    reports what would be published. ``client`` is the Kafka client of the read-backs.
    """
    started = time.monotonic()
    fixset = load_fixset(directory)
    spec = fixset.spec
    topic, audit_topic = spec.topics.corrections, spec.topics.audit
    tid = transactional_id(fixset.digest)
    report = PublishReport(fixset.digest, "dry-run", topic, fixset.corrections.height, tid)
    approval = load_approval(directory)
    if dry_run:
        return _dry_run(report, fixset, approval, approved_digest, settings, spec)
    approval = check_approved(fixset, approval, approved_digest)
    report.reviewer = approval.reviewer
    ensure_audit_topic(settings, audit_topic)
    history = read_audit(settings, audit_topic, digest=fixset.digest)
    if not any(
        a["event"] == "approve"
        and a.get("reviewer") == approval.reviewer
        and a.get("approved_at") == approval.approved_at
        for a in history
    ):
        raise ApprovalError(
            f"the approval of {fixset.digest[:12]}... by {approval.reviewer} is not in the audit topic {audit_topic}",
            hint=f"approve it again: recovery approve {directory} --reviewer NAME",
        )
    done = [a for a in history if a["event"] == "publish"]
    if done:
        report.status, report.audit = "already-published", done[-1]
        report.audit_at = f"{audit_topic}[{done[-1]['_partition']}]@{done[-1]['_offset']}"
        report.offsets = done[-1].get("offsets", {})
        report.notes.append(f"published before at {done[-1].get('time')} by {done[-1].get('reviewer')}")
        report.total_s = time.monotonic() - started
        return report
    partitions = ensure_corrections_topic(settings, spec)
    keys, values, parts = encode_corrections(fixset.corrections, fixset.digest, partitions)
    tx = transactional_producer(settings, tid, client)
    try:
        # fences earlier runs of this digest and resolves their open transaction (abort, or finish a commit);
        # only then is it known what they committed
        tx.init()
        # a concurrent run of this digest may have finished (audit record committed) between the history
        # read above and init: after init it cannot commit anything more, so its audit record is visible now
        done = read_audit(settings, audit_topic, digest=fixset.digest, event="publish")
        if done:
            report.status, report.audit = "already-published", done[-1]
            report.audit_at = f"{audit_topic}[{done[-1]['_partition']}]@{done[-1]['_offset']}"
            report.offsets = done[-1].get("offsets", {})
            report.notes.append(f"published at {done[-1].get('time')} by a concurrent run")
            report.total_s = time.monotonic() - started
            return report
        begins = read_audit(settings, audit_topic, digest=fixset.digest, event="publish-begin")
        since = _earliest([{int(k): v for k, v in b["since"].items()} for b in begins]) if begins else None
        committed = 0  # no begin record: no earlier run sent anything (each writes one before sending)
        if begins:
            committed = read_corrections(settings, topic, digest=fixset.digest, since=since, client=client).height
        if keys and committed == 0:
            since = offsets(settings, topic).end_offsets  # our records can only come after these
            tx.begin()
            _audit(tx, audit_topic, audit_record("publish-begin", fixset.digest, since=since))
            tx.commit()
            _crash_point("after-begin")
            sent_at = time.monotonic()
            tx.begin()
            tx.send_many(topic, keys, values, parts, after_each=_crash_hook(tx))
            _crash_point("before-commit")
            tx.commit()
            report.send_s = time.monotonic() - sent_at
            report.status = "published"
            _crash_point("after-commit")
        else:
            report.status = "resumed" if keys else "published"
        report.offsets = verify(settings, topic, fixset, since=since, client=client) if keys else {}
        report.verified = True
        _crash_point("after-verify")
        record = audit_record(
            "publish",
            fixset.digest,
            reviewer=approval.reviewer,
            approved_at=approval.approved_at,
            incident=fixset.incident,
            counts=fixset.counts,
            corrections=fixset.content.get("corrections", {}),
            topic=topic,
            offsets=report.offsets,
            transactional_id=tid,
            client=client,
            tool_version=__version__,
            status=report.status,
        )
        tx.begin()
        where = _audit(tx, audit_topic, record)
        tx.commit()
    finally:
        tx.close()
    report.audit = record
    report.audit_at = f"{where['topic']}[{where['partition']}]@{where['offset']}"
    report.total_s = time.monotonic() - started
    return report


def _earliest(snapshots: list[dict[int, int]]) -> dict[int, int]:
    """Per partition, the smallest offset of several end-offset snapshots."""
    earliest: dict[int, int] = {}
    for snapshot in snapshots:
        for partition, offset in snapshot.items():
            earliest[partition] = min(offset, earliest.get(partition, offset))
    return earliest


def _dry_run(
    report: PublishReport,
    fixset: FixSet,
    approval: Any,
    approved_digest: str | None,
    settings: KafkaSettings,
    spec: PipelineSpec,
) -> PublishReport:
    try:
        check_approved(fixset, approval, approved_digest)
        report.reviewer = approval.reviewer
        report.notes.append(f"approved by {approval.reviewer} at {approval.approved_at}")
    except ApprovalError as exc:
        report.notes.append(f"NOT PUBLISHABLE YET: {exc}")
    try:
        parts = _check_compacted(settings, spec.topics.corrections)
        report.notes.append(f"corrections topic {spec.topics.corrections} exists ({len(parts)} partitions, compacted)")
    except _MissingTopic:
        report.notes.append(f"corrections topic {spec.topics.corrections} will be created (compacted)")
    except TopicError as exc:
        report.notes.append(f"NOT PUBLISHABLE: {exc}")
    done = read_audit(settings, spec.topics.audit, digest=fixset.digest, event="publish")
    if done:
        report.notes.append(f"already published at {done[-1].get('time')}: a publish would do nothing")
    actions = fixset.content.get("corrections", {})
    report.notes.append(f"upserts {actions.get('upsert', 0):,}, retractions {actions.get('retract', 0):,}")
    frame = conform(fixset.corrections, CORRECTIONS).sort("key", "metric", "window")
    report.preview = frame.head(PREVIEW_ROWS).select(record_key().alias("record_key"), *CORRECTIONS)
    return report
