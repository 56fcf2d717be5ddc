"""``recovery publish``: publish an approved fix set exactly once, verify it, audit it."""

from __future__ import annotations

import argparse
from typing import Any

from recovery.config import KafkaSettings
from recovery.fixes.chunks import DEFAULT_CHUNK_SIZE
from recovery.fixes.publish import publish
from recovery.kafka.client import CLIENTS, DEFAULT_CLIENT

EPILOG = """\
examples:
  recovery publish fixes/inc-1 --dry-run      what would be written, approval and topic checks
  recovery publish fixes/inc-1                publish (rerunning is safe: a published digest is a no-op)
  recovery publish fixes/inc-1 --digest 3f2a...   refuse unless the fix set has exactly this digest
  recovery publish fixes/inc-1 --chunk-size 20000  smaller transactions (a rerun follows the first run's plan)

A fix set is published in transactions of at most --chunk-size corrections, in its sorted order; each
committed chunk is recorded in the audit topic, and a rerun after any failure continues at the first
uncommitted chunk. Downstream read_committed consumers see each chunk when it commits; the final `publish`
audit record of the digest says that the whole set is there. --dry-run shows a partly published set as such.
Each transaction must finish within KAFKA_TRANSACTION_TIMEOUT_MS (45000 by default, at most 60000).
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "publish",
        help="publish an approved fix set to the corrections topic (exactly once), verify, audit",
        description="Publish the corrections of an approved fix set in Kafka transactions of bounded size "
        "(transactional.id derived from the digest), read them back with read_committed, and write an "
        "audit record. Crash-safe: rerun after any failure; it continues at the first uncommitted chunk.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("fixset", metavar="DIR", help="approved fix set directory")
    p.add_argument("--digest", help="the approved digest; publishing stops if the fix set has another")
    p.add_argument("--dry-run", action="store_true", help="write nothing; show what would be published")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        metavar="N",
        help=f"corrections per transaction of a new publish (default {DEFAULT_CHUNK_SIZE:,})",
    )
    p.add_argument(
        "--client",
        choices=CLIENTS,
        default=DEFAULT_CLIENT,
        help=f"Kafka client that publishes and reads back (default {DEFAULT_CLIENT}: confluent (librdkafka) when "
        "confluent-kafka is installed, else kafka-python; native publishes through confluent)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = publish(
        args.fixset,
        KafkaSettings.from_env(),
        approved_digest=args.digest,
        dry_run=args.dry_run,
        client=args.client,
        chunk_size=args.chunk_size,
    )
    for line in report.lines():
        print(line)
    if report.preview is not None and report.preview.height:
        print(report.preview)
    return 0
