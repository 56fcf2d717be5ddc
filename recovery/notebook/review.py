"""Recover a case into a fix set for review (notebook 02), then release an approved fix set (notebook 03).

Publishing is never a side effect of exploring: notebook 02 writes the fix set and prints the commands a
reviewer runs; notebook 03 publishes only a fix set whose digest a named reviewer approved, and only when
the digest it is given (``approved_digest``) is that one.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import ApprovalError, ConfigError
from recovery.fixes.approval import check_approved, load_approval
from recovery.fixes.audit import read_audit
from recovery.fixes.fixset import FixSet, load_fixset
from recovery.fixes.publish import PublishReport, layout_of, publish, read_corrections
from recovery.kafka.topics import list_topics
from recovery.notebook.explore import Case, Text, figures, resolve_path
from recovery.notebook.tables import readable_results
from recovery.notebook.timefmt import format_seconds
from recovery.pipeline.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL
from recovery.pipeline.recover import AUTO, BY_PARTITION, SPARK, RecoveryReport, recover
from recovery.spark.chunks import DEFAULT_CHUNK_RECORDS
from recovery.spark.session import DEFAULT_MASTER, SparkOptions
from recovery.timerange import format_ms

TIMED_STEPS: tuple[str, ...] = ("truth", "originals", "compare", "write")
AUDIT_COLUMNS = ("event", "time", "reviewer", "incident", "digest", "_partition", "_offset")


# ---------------------------------------------------------------- notebook 02


def recover_case(
    case: Case,
    fixset_dir: str,
    *,
    overwrite: bool = False,
    abs_tol: float = DEFAULT_ABS_TOL,
    rel_tol: float = DEFAULT_REL_TOL,
    emulate_grace: bool = False,
    engine: str = AUTO,
    spark_master: str = DEFAULT_MASTER,
    spark_chunk_records: int = DEFAULT_CHUNK_RECORDS,
    spark_parts: str | None = None,
) -> RecoveryReport:
    """Recompute the case's range, compare it with the original outputs and write the fix set.

    ``engine`` as ``recovery recover --engine``; with ``spark``, ``spark_master`` and ``spark_chunk_records``
    say where the tasks run and how many offsets each reads, ``spark_parts`` where they leave their parts on a
    cluster (a shared directory or an object-storage URL, as ``--spark-parts``; docs/spark.md).
    """
    spark = SparkOptions(spark_master, spark_chunk_records, parts=spark_parts or None) if engine == SPARK else None
    return recover(
        case.spec,
        case.from_ms,
        case.to_ms,
        out_dir=resolve_path(fixset_dir),
        incident=case.incident,
        settings=case.settings,
        abs_tol=abs_tol,
        rel_tol=rel_tol,
        emulate_grace=emulate_grace,
        overwrite=overwrite,
        engine=engine,
        spark=spark,
    )


def recovery_overview(report: RecoveryReport) -> pl.DataFrame:
    """The recovery in figures: what was read, compared and corrected."""
    quality = report.fixset.content.get("quality", {})
    actions = report.fixset.content.get("corrections", {})
    c = report.summary.counts
    return figures(
        [
            ("raw records replayed (with lookback)", report.truth.replay.count),
            ("valid unique events", quality.get("events", 0)),
            ("quarantined records", quality.get("quarantined", 0)),
            ("events lost upstream (seq gaps, unrecoverable)", quality.get("lost_events", 0)),
            (
                "missing seqs possibly malformed (a quarantined record nearby)",
                quality.get("missing_events", 0) - quality.get("lost_events", 0),
            ),
            ("seq gaps reaching outside what was read (not counted as lost)", quality.get("outside_range_gaps", 0)),
            ("duplicates (rule: the first copy by partition, offset wins)", quality.get("duplicates", 0)),
            ("original outputs read", report.originals.height),
            ("results compared", sum(c[s] for s in ("ok", "missing", "wrong", "duplicate", "extra"))),
            ("ok", c["ok"]),
            ("missing", c["missing"]),
            ("wrong", c["wrong"]),
            ("duplicate (of which conflicting)", f"{c['duplicate']:,} ({c['conflicting']:,})"),
            ("extra", c["extra"]),
            ("corrections: upserts / retractions", f"{actions.get('upsert', 0):,} / {actions.get('retract', 0):,}"),
            ("fix set digest", report.fixset.digest),
            ("time", recovery_time(report)),
        ]
    )


def recovery_results(report: RecoveryReport, case: Case) -> dict[str, Any]:
    """What notebook 02 records for the runner: digest, counts per class, whether they match the incident's."""
    counts = report.summary.counts
    expected = case.expected_counts
    return {
        "incident": case.incident,
        "fixset": str(report.path) if report.path else None,
        "digest": report.fixset.digest,
        "engine": report.engine,
        "counts": counts,
        "discrepancies": report.summary.discrepancies,
        "corrections": report.fixset.corrections.height,
        "expected_counts_match": (all(counts.get(k, 0) == v for k, v in expected.items()) if expected else None),
    }


def recovery_time(report: RecoveryReport) -> str:
    """The wall time of the recovery and of its steps (``"6.3 s: truth 4.1 s, originals 1.2 s, ..."``).

    The per-partition engine times each step in every partition; their sum can exceed the wall time
    when partitions run in parallel, which the line then says.
    """
    timings = report.timings_s
    steps = ", ".join(f"{step} {format_seconds(timings[step])}" for step in TIMED_STEPS if step in timings)
    total = format_seconds(timings.get("total", 0.0))
    if not steps:
        return total
    summed = " (each summed over the partitions)" if report.engine == BY_PARTITION else ""
    return f"{total}: {steps}{summed}"


def fixset_table(report: RecoveryReport) -> pl.DataFrame:
    """The fix set's corrections with windows and times as ISO-8601 UTC (count windows keep their seq)."""
    return readable_results(report.fixset.corrections, report.fixset.spec)


def next_steps(report: RecoveryReport, reviewer: str = "NAME") -> Text:
    """The digest and the exact commands a reviewer runs to approve and publish this fix set."""
    path = report.path or Path("FIXSET")
    where = shlex.quote(str(path))
    digest = report.fixset.digest
    if not len(report.fixset.corrections):
        return Text(f"**Nothing to correct**: the fix set `{where}` (digest `{digest}`) holds no corrections.")
    return Text(
        f"**Fix set** `{path}`  \n**Digest** `{digest}`\n\n"
        "Review the comparison above and the fix set (`corrections.parquet`, `manifest.json`, `review/`), then:\n\n"
        "```\n"
        f"recovery approve {where} --reviewer {reviewer}\n"
        f"recovery report 03_publish_fixes -p fixset {where} -p approved_digest {digest} "
        f"-p reviewer {reviewer} -p dry_run false\n"
        "```\n\n"
        f"(or `recovery publish {where}` from a shell). A fix set that changes gets another digest and needs "
        "a new approval."
    )


# ---------------------------------------------------------------- notebook 03


def check_release(fixset: str, approved_digest: str = "", reviewer: str = "", dry_run: bool = True) -> Text:
    """Refuse a release whose digest or reviewer does not match the fix set's approval; describe the fix set.

    A dry run of an unapproved fix set is allowed (it shows what would be written); a real publish needs
    ``approved_digest`` and an approval of exactly that digest (by ``reviewer`` when given).
    """
    directory = resolve_path(fixset)
    loaded = load_fixset(directory)  # refuses a fix set whose files no longer match their digest
    approval = load_approval(directory)
    given = approved_digest.strip()
    if not dry_run and not given:
        raise ConfigError(
            "publishing needs approved_digest: the digest the reviewer approved",
            hint=f"pass -p approved_digest {loaded.digest} if that is the digest that was reviewed",
        )
    if given and given != loaded.digest:
        raise ApprovalError(
            f"refusing: approved_digest {given[:12]}... is not the digest of {directory} ({loaded.digest[:12]}...)",
            hint="publish the fix set that was approved, or have this one reviewed and approved",
        )
    if approval is not None and reviewer and approval.reviewer != reviewer:
        raise ApprovalError(
            f"refusing: {directory} was approved by {approval.reviewer}, not by {reviewer}",
            hint="pass the reviewer who approved it, or have it approved by this reviewer",
        )
    if not dry_run:
        check_approved(loaded, approval, given)
    status = (
        f"approved by **{approval.reviewer}** at {approval.approved_at}"
        if approval is not None and approval.digest == loaded.digest
        else "**not approved** (a dry run only shows what would be written)"
    )
    return Text(
        f"**Fix set** `{directory}` of incident `{loaded.incident}`  \n**Digest** `{loaded.digest}` "
        f"(checked against its files)  \n**Approval** {status}  \n**Mode** "
        + ("dry run: nothing is written" if dry_run else "publish: corrections are written exactly once")
        + "\n\n"
        + _describe(loaded)
    )


def _describe(fixset: FixSet) -> str:
    rng = fixset.content.get("range", {})
    actions = fixset.content.get("corrections", {})
    counts = fixset.counts
    classes = ", ".join(f"{k} {v:,}" for k, v in counts.items() if k != "ok" and v)
    return (
        f"Range {format_ms(int(rng.get('from_ms', 0)))} .. {format_ms(int(rng.get('to_ms', 0)))}; "
        f"{actions.get('upsert', 0):,} upserts and {actions.get('retract', 0):,} retractions "
        f"for {classes or 'nothing'}; "
        f"to topic `{fixset.spec.topics.corrections}`."
    )


def release(fixset: str, approved_digest: str = "", dry_run: bool = True, bootstrap_servers: str = "") -> PublishReport:
    """Publish the fix set (or dry-run it, which shows a partly published set as such): transactions of bounded
    size, each chunk committed exactly once, verified by a read_committed read-back, audited."""
    settings = KafkaSettings.from_env({"bootstrap_servers": bootstrap_servers or None})
    return publish(resolve_path(fixset), settings, approved_digest=approved_digest.strip() or None, dry_run=dry_run)


def report_text(report: PublishReport) -> Text:
    """A publish report as Markdown lines."""
    return Text("  \n".join(report.lines()))


def release_results(report: PublishReport, dry_run: bool) -> dict[str, Any]:
    """What notebook 03 records for the runner."""
    return {
        "digest": report.digest,
        "status": report.status,
        "dry_run": dry_run,
        "corrections": report.corrections,
        "verified": report.verified,
        "reviewer": report.reviewer,
        "chunks": report.chunks,
        "publication_before": None if report.progress is None else report.progress.state,
    }


def preview_table(report: PublishReport, fixset: str) -> pl.DataFrame | Text:
    """The first corrections a publish writes (or would write), windows and times as ISO-8601 UTC."""
    if report.preview is None:
        return Text("No preview: the fix set was published, not dry-run.")
    return readable_results(report.preview, load_fixset(resolve_path(fixset)).spec)


def read_back(fixset: str, bootstrap_servers: str = "") -> pl.DataFrame | Text:
    """Committed corrections of the fix set's digest, per action and reason (read_committed)."""
    settings = KafkaSettings.from_env({"bootstrap_servers": bootstrap_servers or None})
    loaded = load_fixset(resolve_path(fixset))
    topic = loaded.spec.topics.corrections
    if topic not in list_topics(settings):
        return Text(f"The corrections topic `{topic}` does not exist yet: nothing has been published.")
    published = read_corrections(settings, topic, digest=loaded.digest, layout=layout_of(loaded.spec))
    if published.height == 0:
        return Text(f"No committed correction of digest `{loaded.digest[:12]}...` on `{topic}`.")
    return (
        published.group_by("action", "reason")
        .agg(pl.len().cast(pl.Int64).alias("records"), pl.col("record_key").n_unique().alias("distinct_keys"))
        .sort("action", "reason")
    )


def audit_trail(fixset: str, bootstrap_servers: str = "") -> pl.DataFrame:
    """The audit records (approvals and publishes) of the fix set's digest, oldest first."""
    settings = KafkaSettings.from_env({"bootstrap_servers": bootstrap_servers or None})
    loaded = load_fixset(resolve_path(fixset))
    records = read_audit(settings, loaded.spec.topics.audit, digest=loaded.digest)
    rows: list[dict[str, Any]] = []
    for record in records:
        row = {c: record.get(c) for c in AUDIT_COLUMNS}
        row["details"] = json.dumps({k: v for k, v in record.items() if k not in AUDIT_COLUMNS}, default=str)
        rows.append(row)
    schema = {c: pl.String for c in AUDIT_COLUMNS} | {"_partition": pl.Int32, "_offset": pl.Int64, "details": pl.String}
    frame = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return frame.rename({"_partition": "partition", "_offset": "offset"})
