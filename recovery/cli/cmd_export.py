"""``recovery export``: archive a topic range as RECORDS Parquet, replayable after retention expired."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from recovery.cli._common import add_range, add_replay_tuning, parse_range, spec_of
from recovery.config import KafkaSettings
from recovery.errors import ConfigError
from recovery.pipeline.steps import outputs_slack_ms
from recovery.replay.bounded import replay
from recovery.source import KafkaSource
from recovery.spec import PipelineSpec, load_spec

DEFAULT_SPEC = "pipeline.toml"  # read from the working directory when --spec is not given

EPILOG = """\
examples:
  recovery export --spec pipeline.toml --from 2026-01-01T10:00 --to 2026-01-01T11:00 --out archive/raw
  recovery export --topic ticks.sma --from 2026-01-01T10:00 --to 2026-01-01T11:00 --out archive/outputs
  # later, without Kafka:
  recovery recover --spec pipeline.toml --from 2026-01-01T10:00 --to 2026-01-01T11:00 \\
      --source-raw archive/raw --source-outputs archive/outputs --out fixes/inc-1
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write a topic range (with lookback) to Parquet for later recovery",
        description="Write the records of a topic range as RECORDS Parquet parts (partition, offset, Kafka "
        "timestamp, key, value). With --spec (and no --topic) the raw topic is exported with the lookback "
        "its metrics need, so a recovery from the export equals one from Kafka.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--topic", help="topic to export (default: the spec's raw topic)")
    p.add_argument(
        "--spec",
        metavar="TOML",
        help=f"pipeline spec: raw topic, its lookback and the outputs' window slack (default: ./{DEFAULT_SPEC} "
        "when it exists), so the export holds what `recover` reads",
    )
    add_range(p)
    p.add_argument("--out", required=True, metavar="DIR", help="new directory for the Parquet parts")
    add_replay_tuning(p)
    p.set_defaults(func=run)


def export_spec(args: argparse.Namespace) -> PipelineSpec | None:
    """The spec whose bounds the export reads: ``--spec``, else ./pipeline.toml when it exists, else none."""
    spec = spec_of(args)
    if spec is None and Path(DEFAULT_SPEC).is_file():
        spec = load_spec(DEFAULT_SPEC)
    return spec


def run(args: argparse.Namespace) -> int:
    spec = export_spec(args)
    topic = args.topic or (spec.topics.raw if spec else None)
    if not topic:
        raise ConfigError("no topic to export", hint="pass --topic NAME or --spec pipeline.toml")
    rng = parse_range(args)
    slack_ms = args.slack_ms
    if spec is not None and topic == spec.topics.output:
        slack_ms = outputs_slack_ms(spec, args.slack_ms)  # window results are published when windows close
    lookback = spec if spec is not None and topic == spec.topics.raw else None
    if spec is None or topic not in (spec.topics.raw, spec.topics.output):
        print(
            f"note: {topic} is not a topic of a spec: exported {rng} plus {slack_ms} ms after it, without lookback; "
            "to recover from this archive, export with the spec (--spec) so it holds what `recover` reads",
            file=sys.stderr,
        )
    result = replay(
        KafkaSource(topic, KafkaSettings.from_env()),
        from_ms=rng.from_ms,
        to_ms=rng.to_ms,
        spec=lookback,
        lookback_ms=None if lookback else 0,
        lookback_events=None if lookback else 0,
        slack_ms=slack_ms,
        workers=args.workers,
        out_dir=args.out,
        quiet=args.quiet,
        client=args.client,
        time_basis=args.time_basis,
    )
    print(f"exported {topic} {rng}: {result.summary()} -> {result.out_dir}")
    return 0
