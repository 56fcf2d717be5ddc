"""Approval of a fix set: a named reviewer approves its digest, recorded next to it and in the audit topic.

Publishing requires both records to name the fix set's current digest: a changed fix set has another digest
and is refused until it is approved again.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from recovery.config import KafkaSettings
from recovery.errors import ApprovalError, ConfigError
from recovery.fixes.audit import append_audit, audit_record, ensure_audit_topic
from recovery.fixes.fixset import APPROVAL_FILE, FixSet, load_fixset
from recovery.timerange import format_ms, now_ms


@dataclass(frozen=True)
class Approval:
    """A named reviewer's approval of one digest."""

    digest: str
    reviewer: str
    approved_at: str
    incident: str
    audit: dict[str, Any] = field(default_factory=dict)  # where the audit record went (topic, partition, offset)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_approval(directory: str | Path) -> Approval | None:
    """The fix set's approval, or None when it has none."""
    path = Path(directory) / APPROVAL_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return Approval(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ApprovalError(
            f"{str(path)!r} is not a valid approval ({exc})",
            hint=f"approve again: recovery approve {Path(directory)} --reviewer NAME",
        ) from None


def write_approval(directory: str | Path, approval: Approval) -> Path:
    """Write approval.json atomically."""
    path = Path(directory) / APPROVAL_FILE
    tmp = path.with_name(f".{APPROVAL_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(approval.to_dict(), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def new_approval(fixset: FixSet, reviewer: str) -> Approval:
    """An approval of ``fixset``'s digest by ``reviewer`` now (not yet recorded anywhere)."""
    name = reviewer.strip()
    if not name or any(ch in name for ch in "\n\r\t"):
        raise ConfigError(f"reviewer must be a non-empty name, got {reviewer!r}", hint="--reviewer alice")
    return Approval(fixset.digest, name, format_ms(now_ms()), fixset.incident)


def approve(directory: str | Path, reviewer: str, settings: KafkaSettings) -> Approval:
    """Record that ``reviewer`` approved the fix set in ``directory`` as it is now.

    The digest is checked first (a changed fix set cannot be approved as the old one); the approval goes
    to the audit topic and then to ``approval.json``. Publishing requires both to match.
    """
    fixset = load_fixset(directory)
    approval = new_approval(fixset, reviewer)
    topic = fixset.spec.topics.audit
    ensure_audit_topic(settings, topic)
    where = append_audit(
        settings,
        topic,
        audit_record(
            "approve",
            fixset.digest,
            reviewer=approval.reviewer,
            approved_at=approval.approved_at,
            incident=fixset.incident,
            counts=fixset.counts,
            corrections=fixset.content.get("corrections", {}),
        ),
    )
    approval = replace(approval, audit=where)
    write_approval(directory, approval)
    return approval


def check_approved(fixset: FixSet, approval: Approval | None, approved_digest: str | None = None) -> Approval:
    """The approval of ``fixset``, or :class:`ApprovalError` when it is missing or for another digest."""
    where = fixset.path or "the fix set"
    again = f"review it and run: recovery approve {where} --reviewer NAME"
    if approval is None:
        raise ApprovalError(f"fix set {fixset.digest[:12]}... in {where} is not approved", hint=again)
    if approval.digest != fixset.digest:
        raise ApprovalError(
            f"the approval in {where} is for digest {approval.digest[:12]}..., the fix set is {fixset.digest[:12]}...: "
            "it changed since it was approved",
            hint=again,
        )
    if approved_digest is not None and approved_digest.strip() != fixset.digest:
        raise ApprovalError(
            f"the approved digest given ({approved_digest.strip()[:12]}...) is not the fix set's "
            f"({fixset.digest[:12]}...)",
            hint="publish the fix set that was approved, or have this one approved",
        )
    return approval


# --------------------------------------------------------------------------------------------- applying
