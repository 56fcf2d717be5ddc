"""``recovery recover``: the one-shot recovery of a range into a fix set."""

from __future__ import annotations

import argparse
from typing import Any

from recovery.cli._common import add_range, add_replay_tuning, add_sources, add_tolerances, parse_range
from recovery.config import KafkaSettings
from recovery.pipeline.recover import AUTO, ENGINES, SPARK, recover
from recovery.spark.chunks import DEFAULT_CHUNK_RECORDS
from recovery.spark.session import DEFAULT_DRIVER_MEMORY, DEFAULT_MASTER, SparkOptions
from recovery.spec import load_spec

EPILOG = """\
examples:
  recovery recover --spec pipeline.toml --from 2026-01-01T10:00 --to 2026-01-01T11:00 --out fixes/inc-1
  recovery recover --spec pipeline.toml --from 2026-01-01T10:00 --to 2026-01-01T11:00 --out fixes/inc-1 \\
      --engine spark --spark-master local[2]
  recovery recover --spec pipeline.toml --from 2026-01-01T10:00Z --to 2026-01-01T11:00Z --incident INC-42 \\
      --source-raw archive/raw --source-outputs archive/outputs --out fixes/inc-42
then: recovery approve fixes/inc-1 --reviewer NAME && recovery publish fixes/inc-1
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "recover",
        help="replay, validate, dedup, recompute, compare and write a fix set for a range",
        description="Recover a range in one go: replay the raw events (with lookback) and the original outputs, "
        "quarantine malformed events, drop duplicates, recompute truth, classify every result and write "
        "the fix set (corrections + manifest + digest) to a new directory.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spec", required=True, metavar="TOML", help="pipeline spec file")
    add_range(p)
    p.add_argument("--out", required=True, metavar="DIR", help="new directory for the fix set")
    p.add_argument("--incident", help="incident id recorded in the manifest (default: derived from the range)")
    p.add_argument("--emulate-grace", action="store_true", help="truth drops late events like the live worker")
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default=AUTO,
        help="auto (default): partition by partition (bounded memory, every step in parallel with --workers), "
        "in memory when the topics are not partitioned alike by key; by-partition refuses that fallback; "
        "spark runs the same steps as Spark tasks in offset chunks (same fix set), see docs/spark.md",
    )
    p.add_argument(
        "--spark-master",
        default=DEFAULT_MASTER,
        metavar="URL",
        help=f"--engine spark: local[N], spark://HOST:PORT, yarn or k8s://... (default {DEFAULT_MASTER})",
    )
    p.add_argument(
        "--spark-driver-memory",
        default=DEFAULT_DRIVER_MEMORY,
        metavar="SIZE",
        help=f"--engine spark: the driver's heap; in local[N] the tasks' too (default {DEFAULT_DRIVER_MEMORY})",
    )
    p.add_argument(
        "--chunk-records",
        type=int,
        default=DEFAULT_CHUNK_RECORDS,
        metavar="N",
        help=f"--engine spark: offsets one task reads; larger partitions are split (default {DEFAULT_CHUNK_RECORDS:,})",
    )
    p.add_argument(
        "--spark-parts",
        metavar="PATH|URL",
        help="--engine spark on a cluster: where tasks leave their comparison, truth and originals parts, a "
        "directory every executor shares or an object-storage URL (s3://bucket/prefix, gs://, abfs://, hdfs://); "
        "default: the work directory next to --out, which executors must then share",
    )
    add_sources(p)
    add_tolerances(p)
    add_replay_tuning(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    rng = parse_range(args)
    needs_kafka = not (args.source_raw and args.source_outputs)
    report = recover(
        spec,
        rng.from_ms,
        rng.to_ms,
        out_dir=args.out,
        incident=args.incident,
        settings=KafkaSettings.from_env() if needs_kafka else None,
        raw_source=args.source_raw,
        outputs_source=args.source_outputs,
        workers=args.workers,
        slack_ms=args.slack_ms,
        abs_tol=args.abs_tol,
        rel_tol=args.rel_tol,
        emulate_grace=args.emulate_grace,
        quiet=args.quiet,
        client=args.client,
        time_basis=args.time_basis,
        engine=args.engine,
        spark=SparkOptions(args.spark_master, args.chunk_records, args.spark_driver_memory, args.spark_parts)
        if args.engine == SPARK
        else None,
    )
    for line in report.lines():
        print(line)
    return 0
