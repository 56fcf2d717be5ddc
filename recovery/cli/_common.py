"""Arguments shared by the recovery verbs (range, sources, spec, tolerances)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from recovery.config import usable_cores
from recovery.errors import ConfigError
from recovery.kafka.client import CLIENTS, DEFAULT_CLIENT
from recovery.pipeline.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL
from recovery.replay.bounded import DEFAULT_SLACK_MS
from recovery.replay.plan import KAFKA_TIME, TIME_BASES
from recovery.replay.pool import AUTO, check_workers
from recovery.spec import PipelineSpec, load_spec
from recovery.timerange import TimeRange, time_range

if TYPE_CHECKING:
    import polars as pl

TIME_HELP = "ISO-8601 (UTC if no zone, e.g. 2026-01-01T10:00) or epoch milliseconds"


def add_range(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--from", dest="from_", metavar="TIME", required=required, help=f"range start: {TIME_HELP}")
    parser.add_argument("--to", metavar="TIME", required=required, help=f"range end, exclusive: {TIME_HELP}")


def parse_range(args: argparse.Namespace) -> TimeRange:
    return time_range(args.from_, args.to)


def spec_of(args: argparse.Namespace) -> PipelineSpec | None:
    return load_spec(args.spec) if getattr(args, "spec", None) else None


def add_sources(parser: argparse.ArgumentParser, *, outputs: bool = True) -> None:
    parser.add_argument(
        "--source-raw",
        nargs="+",
        metavar="FILE",
        help="read raw events from archive files (Parquet/NDJSON, directories or globs) instead of Kafka",
    )
    if outputs:
        parser.add_argument(
            "--source-outputs",
            nargs="+",
            metavar="FILE",
            help="read the original outputs from archive files instead of Kafka",
        )


def _workers(text: str) -> int:
    """``--workers``: a number of workers, or 0 for the default (refused at parsing time, before any connection)."""
    try:
        return check_workers(int(text))
    except (ValueError, ConfigError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of workers >= 1, or {AUTO} (auto)") from exc


def add_replay_tuning(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=_workers,
        default=AUTO,
        help=f"partitions worked on at a time, one per worker thread (processes for kafka-python) (default {AUTO}: the "
        f"usable cores, {usable_cores()} here, and one more thread when every partition is small enough to be held "
        "in memory)",
    )
    parser.add_argument(
        "--slack-ms",
        type=int,
        default=DEFAULT_SLACK_MS,
        help=f"Kafka time read after --to for late events (default {DEFAULT_SLACK_MS})",
    )
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default=DEFAULT_CLIENT,
        help=f"Kafka client that reads (default {DEFAULT_CLIENT}: native (the compiled Arrow reader) when it is "
        "built and the connection is plaintext, else confluent (librdkafka) when confluent-kafka is installed, "
        "else kafka-python)",
    )
    parser.add_argument(
        "--time-basis",
        choices=TIME_BASES,
        default=KAFKA_TIME,
        help="kafka (default): the range is found by Kafka timestamp; event: whole partitions are read by offset "
        "(up to the end offsets at the start) and events are judged by their event time, for topics whose Kafka "
        "timestamps are not event times (backfills, producer-set timestamps)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_tolerances(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--abs-tol", type=float, default=DEFAULT_ABS_TOL, help="absolute tolerance of a right value")
    parser.add_argument("--rel-tol", type=float, default=DEFAULT_REL_TOL, help="relative tolerance of a right value")


def sink_atomically(frame: pl.LazyFrame, out: Path) -> None:
    """Stream ``frame`` to the Parquet file ``out`` through a temporary file next to it (no half-written file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    # zstd at level 1: 1M results in 0.06 s instead of 0.09 s at polars' default level, in a file 17 % larger
    frame.sink_parquet(tmp, compression="zstd", compression_level=1)
    tmp.replace(out)
