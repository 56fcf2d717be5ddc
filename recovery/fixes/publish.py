"""Publish an approved fix set exactly once to the compacted corrections topic, verify it, audit it.

Exactly once, also across crashes, for fix sets of any size: the corrections go in transactions of at most
``chunk_size`` corrections (the plan, :mod:`recovery.fixes.chunks`), in the fix set's sorted order, with
one ``transactional.id`` derived from the digest. Before anything else a run starts a producer with that id:
``init_transactions`` fences any earlier incarnation and resolves its open transaction (an open one is
aborted, one that was committing is completed). Only then does it read the audit history (read_committed).

The first run writes a ``publish-begin`` audit record in its own transaction: the plan (chunk boundaries)
and the corrections topic's end offsets (records of this publish can only come after them). Each chunk's
transaction holds the chunk's corrections AND a ``publish-chunk`` audit record naming the chunk, so a chunk
is committed exactly when its audit record is. A rerun follows the recorded plan and continues at the first
chunk without a committed ``publish-chunk`` record; committed chunks are never sent again. When every chunk
is committed, a read_committed read-back checks that every correction is there exactly once with its value,
and a ``publish`` audit record (digest, reviewer, counts, offsets, chunks, time) is written in a last
transaction. A digest with a ``publish`` audit record is a no-op.

Downstream (read_committed) sees each chunk at once when its transaction commits, chunk after chunk in the
fix set's order; the ``publish`` audit record says the whole set is there.

Correction records: key ``"{key}|{metric}|{window}"`` (UTF-8), value ``{"key", "metric", "window",
"time_ms", "action", "value", "reason", "digest"}`` (JSON), built by :func:`encode_corrections`. A correction
goes to the partition the default partitioner gives its result key (the symbol), like the live worker's
outputs: with the same partition count, a result's outputs and corrections share a partition number, and
every copy of one correction key lands in one partition, as compaction needs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recovery import __version__
from recovery.config import KafkaSettings
from recovery.errors import ApprovalError, DataError, TopicError
from recovery.fixes.approval import check_approved, load_approval
from recovery.fixes.audit import audit_record, ensure_audit_topic, read_audit
from recovery.fixes.chunks import (
    DEFAULT_CHUNK_SIZE,
    Plan,
    Progress,
    committed_chunks,
    plan_chunks,
    progress,
    recorded_plan,
    resume_point,
)
from recovery.fixes.crash import CRASH_ENV
from recovery.fixes.crash import crash_hook as _crash_hook
from recovery.fixes.crash import crash_point as _crash_point
from recovery.fixes.encoding import encode_corrections, layout_of, partition_of, record_key, sorted_corrections
from recovery.fixes.fixset import FixSet, load_fixset
from recovery.fixes.readback import VerificationError, read_corrections, verify
from recovery.fixes.report import PublishReport
from recovery.frames import CORRECTIONS
from recovery.kafka.client import DEFAULT_CLIENT, TxProducer, transactional_producer
from recovery.kafka.topics import ensure_topic, offsets, partitions_for, topic_config
from recovery.spec import PipelineSpec

CORRECTIONS_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
PREVIEW_ROWS = 20

__all__ = [
    "CRASH_ENV",
    "PublishReport",
    "VerificationError",
    "encode_corrections",
    "layout_of",
    "partition_of",
    "publish",
    "read_corrections",
    "record_key",
    "verify",
]


def transactional_id(digest: str) -> str:
    """The stable transactional.id of a fix set: reruns fence and resolve earlier attempts."""
    return f"recovery-publish-{digest[:40]}"


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


def _audit(tx: TxProducer, topic: str, record: dict[str, Any]) -> dict[str, Any]:
    """Send an audit record inside ``tx``'s open transaction; returns where it went."""
    value = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    return tx.send_one(topic, str(record["digest"]).encode(), value)


def _where(record: dict[str, Any], audit_topic: str) -> str:
    return f"{audit_topic}[{record['_partition']}]@{record['_offset']}"


def _already(report: PublishReport, done: dict[str, Any], audit_topic: str, note: str) -> PublishReport:
    report.status, report.audit, report.audit_at = "already-published", done, _where(done, audit_topic)
    report.offsets = done.get("offsets", {})
    report.chunks = int(done.get("chunks", 1))
    report.notes.append(note)
    return report


def publication_progress(settings: KafkaSettings, fixset: FixSet) -> Progress:
    """How far the publication of ``fixset`` got (from its committed audit records)."""
    history = read_audit(settings, fixset.spec.topics.audit, digest=fixset.digest)
    return progress(history, fixset.corrections.height)


def publish(
    directory: str | Path,
    settings: KafkaSettings,
    *,
    approved_digest: str | None = None,
    dry_run: bool = False,
    client: str = DEFAULT_CLIENT,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> PublishReport:
    """Publish the approved fix set in ``directory`` exactly once, verify it and write the audit record.

    ``approved_digest`` (optional) must equal the fix set's digest. ``dry_run`` writes nothing and
    reports what would be published. ``client`` is the Kafka client of the read-backs. ``chunk_size`` bounds
    the corrections per transaction of a new publish (a rerun follows the plan recorded by the first run).
    """
    started = time.monotonic()
    fixset = load_fixset(directory)
    spec = fixset.spec
    topic, audit_topic = spec.topics.corrections, spec.topics.audit
    tid = transactional_id(fixset.digest)
    report = PublishReport(fixset.digest, "dry-run", topic, fixset.corrections.height, tid)
    approval = load_approval(directory)
    if dry_run:
        return _dry_run(report, fixset, approval, approved_digest, settings, chunk_size)
    approval = check_approved(fixset, approval, approved_digest)
    plan_chunks(fixset.corrections.height, chunk_size)  # a chunk size that cannot work fails before any write
    report.reviewer = approval.reviewer
    ensure_audit_topic(settings, audit_topic)
    tx = transactional_producer(settings, tid, client)
    try:
        # before anything else: fence earlier runs of this digest and resolve their open transaction (abort,
        # or finish a commit). Only then is it known what they committed, and no open transaction of theirs
        # holds back the read_committed reads below.
        tx.init()
        history = read_audit(settings, audit_topic, digest=fixset.digest)
        _check_audited_approval(history, approval, directory, audit_topic)
        done = [a for a in history if a["event"] == "publish"]
        if done:
            note = f"published before at {done[-1].get('time')} by {done[-1].get('reviewer')}"
            _already(report, done[-1], audit_topic, note)
            report.total_s = time.monotonic() - started
            return report
        report.progress = progress(history, fixset.corrections.height)
        partitions = ensure_corrections_topic(settings, spec)
        plan, first, since = _plan(tx, settings, fixset, history, chunk_size, client)
        report.chunks, report.first_chunk = plan.chunks, first
        sent_at = time.monotonic()
        report.sent = _send_chunks(tx, fixset, plan, first, partitions)
        report.send_s = time.monotonic() - sent_at
        if first == 0 or plan.chunks == 0:
            report.status = "published"
        else:
            report.status = "continued" if first < plan.chunks else "resumed"
        report.offsets = verify(settings, topic, fixset, since=since, client=client) if plan.chunks else {}
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
            chunks=plan.chunks,
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


def _check_audited_approval(history: list[dict[str, Any]], approval: Any, directory: str | Path, topic: str) -> None:
    """The approval in the fix set must be the one recorded in the audit topic."""
    who, when = approval.reviewer, approval.approved_at
    if not any(a["event"] == "approve" and a.get("reviewer") == who and a.get("approved_at") == when for a in history):
        raise ApprovalError(
            f"the approval of {approval.digest[:12]}... by {approval.reviewer} is not in the audit topic {topic}",
            hint=f"approve it again: recovery approve {directory} --reviewer NAME",
        )


def _plan(
    tx: TxProducer,
    settings: KafkaSettings,
    fixset: FixSet,
    history: list[dict[str, Any]],
    chunk_size: int,
    client: str,
) -> tuple[Plan, int, dict[int, int] | None]:
    """The plan, the first chunk to send and the offsets after which this digest's records are.

    The recorded plan when an earlier run wrote one; otherwise a new plan, recorded (with the corrections
    topic's end offsets) in a ``publish-begin`` audit record of its own transaction.
    """
    topic, audit_topic, total = fixset.spec.topics.corrections, fixset.spec.topics.audit, fixset.corrections.height
    begins = [a for a in history if a["event"] == "publish-begin"]
    since = _earliest([{int(k): v for k, v in b["since"].items()} for b in begins]) if begins else None
    plan = recorded_plan(history)
    if plan is not None:
        if plan.total != total:
            raise DataError(
                f"the recorded publish plan of {fixset.digest[:12]}... covers {plan.total:,} corrections, "
                f"the fix set has {total:,}",
                hint="the audit topic holds another plan for this digest: inspect it before publishing",
            )
        return plan, resume_point(plan, committed_chunks(history)), since
    if begins and read_corrections(settings, topic, digest=fixset.digest, since=since, client=client).height:
        # a run of a version without plans (one transaction for the whole set) committed everything
        whole = plan_chunks(total, max(total, 1))
        return whole, whole.chunks, since
    plan = plan_chunks(total, chunk_size)
    if plan.chunks == 0:
        return plan, 0, since
    since = offsets(settings, topic).end_offsets  # our records can only come after these
    tx.begin()
    outputs = fixset.spec.outputs
    written = "record" if layout_of(fixset.spec) is None else "layout"
    begin = audit_record(
        "publish-begin",
        fixset.digest,
        since=since,
        boundaries=list(plan.boundaries),
        chunk_size=chunk_size,
        corrections_format=written,
        retraction=outputs.retraction if written == "layout" else "record",
    )
    _audit(tx, audit_topic, begin)
    tx.commit()
    _crash_point("after-begin")
    return plan, 0, since


def _send_chunks(tx: TxProducer, fixset: FixSet, plan: Plan, first: int, partitions: int) -> int:
    """Send chunks ``first..`` of ``plan``, one transaction each with its ``publish-chunk`` record; returns the
    corrections sent."""
    topic, audit_topic = fixset.spec.topics.corrections, fixset.spec.topics.audit
    ordered = sorted_corrections(fixset.corrections)
    layout = layout_of(fixset.spec)
    hook = _crash_hook(tx)
    sent = 0
    for index in range(first, plan.chunks):
        start, end = plan.chunk(index)
        keys, values, parts = encode_corrections(ordered.slice(start, end - start), fixset.digest, partitions, layout)
        last = index == plan.chunks - 1
        tx.begin()
        tx.send_many(topic, keys, values, parts, after_each=None if hook is None else _offset_hook(hook, start))
        chunk = audit_record(
            "publish-chunk",
            fixset.digest,
            chunk=index,
            chunks=plan.chunks,
            start=start,
            end=end,
            first_key=keys[0].decode(),
            last_key=keys[-1].decode(),
        )
        _audit(tx, audit_topic, chunk)
        _crash_point("before-commit", index, last)
        tx.commit()
        sent += end - start
        _crash_point("after-commit", index, last)
    return sent


def _offset_hook(hook: Callable[[int], None], before: int) -> Callable[[int], None]:
    return lambda sent: hook(before + sent)


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
    chunk_size: int,
) -> PublishReport:
    spec = fixset.spec
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
    history = read_audit(settings, spec.topics.audit, digest=fixset.digest)
    report.progress = progress(history, fixset.corrections.height)
    plan = recorded_plan(history) or plan_chunks(fixset.corrections.height, chunk_size)
    report.chunks = plan.chunks
    if report.progress.state == "not-started":
        report.notes.append(
            f"plan: {plan.chunks} transaction(s) of at most {plan.boundaries[1] if plan.chunks else 0:,} corrections"
        )
    actions = fixset.content.get("corrections", {})
    report.notes.append(f"upserts {actions.get('upsert', 0):,}, retractions {actions.get('retract', 0):,}")
    report.preview = (
        sorted_corrections(fixset.corrections).head(PREVIEW_ROWS).select(record_key().alias("record_key"), *CORRECTIONS)
    )
    return report
