"""``recovery replay``: bounded replay of a topic to Parquet parts (time range or offsets, parallel, group mode)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recovery.cli._common import add_range, add_replay_tuning, parse_range, spec_of
from recovery.config import KafkaSettings
from recovery.errors import ConfigError
from recovery.replay.bounded import lookbacks, replay
from recovery.replay.group import replay_group
from recovery.replay.plan import KAFKA_TIME
from recovery.source import KafkaSource

EPILOG = """\
examples:
  recovery replay --spec pipeline.toml --from 2026-01-01T10:00 --to 2026-01-01T11:00 --out replay/ticks --workers 2
  recovery replay --topic ticks --offsets 0:1000-2000 1:0- --out replay/part
  # on each of several machines (a shared or copied --out makes one replay of all parts):
  recovery replay --spec pipeline.toml --from 2026-01-01 --to 2026-01-02 --group inc-42 --out /shared/inc-42
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a topic range (bounded, with lookback) to Parquet parts",
        description="Read a topic for a time range (Kafka timestamps) or explicit offsets, bounded by the end "
        "offsets snapshotted at the start, and write RECORDS Parquet parts. With --spec the lookback "
        "of its metrics is read too.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--topic", help="topic to replay (default: the spec's raw topic)")
    p.add_argument("--spec", metavar="TOML", help="pipeline spec: raw topic, field names and lookback")
    add_range(p, required=False)
    p.add_argument(
        "--offsets",
        nargs="+",
        metavar="P:START-END",
        help="explicit offsets per partition instead of a time range (END exclusive; empty = snapshot end)",
    )
    p.add_argument("--partitions", metavar="LIST", help="only these partitions, e.g. 0,3,5")
    p.add_argument("--group", help="consumer-group mode: members with the same group split the partitions")
    p.add_argument("--expect-members", type=int, default=1, help="group mode: wait until this many members joined")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the Parquet parts")
    add_replay_tuning(p)
    p.set_defaults(func=run)


def parse_offsets(items: list[str]) -> dict[int, tuple[int | None, int | None]]:
    """``["0:100-200", "1:5-"]`` -> {0: (100, 200), 1: (5, None)}."""
    offsets: dict[int, tuple[int | None, int | None]] = {}
    for item in items:
        try:
            part, _, span = item.partition(":")
            start, sep, end = span.partition("-")
            if not sep:
                raise ValueError(item)
            offsets[int(part)] = (int(start) if start else None, int(end) if end else None)
        except ValueError:
            raise ConfigError(
                f"--offsets {item!r} is not PARTITION:START-END", hint="e.g. 0:100-200, or 0:100- to the end"
            ) from None
    return offsets


def parse_partitions(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--partitions {text!r} is not a list of numbers", hint="e.g. --partitions 0,3,5") from None


def run(args: argparse.Namespace) -> int:
    spec = spec_of(args)
    topic = args.topic or (spec.topics.raw if spec else None)
    if not topic:
        raise ConfigError("no topic to replay", hint="pass --topic NAME or --spec pipeline.toml")
    if args.offsets and (args.from_ or args.to):
        raise ConfigError("give either --from/--to or --offsets, not both")
    from_ms = to_ms = None
    if args.from_ or args.to:
        if not (args.from_ and args.to):
            raise ConfigError("a time range needs both --from and --to")
        rng = parse_range(args)
        from_ms, to_ms = rng.from_ms, rng.to_ms
    elif not args.offsets:
        raise ConfigError("nothing to replay", hint="pass --from/--to or --offsets")
    source = KafkaSource(topic, KafkaSettings.from_env())
    offsets = parse_offsets(args.offsets) if args.offsets else None
    if args.group:
        if not args.out:
            raise ConfigError("consumer-group mode writes Parquet parts", hint="pass --out DIR")
        if args.time_basis != KAFKA_TIME:
            raise ConfigError(
                f"consumer-group mode reads by Kafka time only, not --time-basis {args.time_basis}",
                hint="replay without --group (--workers N reads partitions in parallel)",
            )
        lookback_ms, lookback_events = lookbacks(spec, offsets)
        result = replay_group(
            source,
            group=args.group,
            out_dir=Path(args.out),
            from_ms=from_ms,
            to_ms=to_ms,
            offsets=offsets,
            fields=spec.layout if spec else None,
            lookback_ms=lookback_ms,
            lookback_events=lookback_events,
            slack_ms=args.slack_ms,
            partitions=parse_partitions(args.partitions),
            expect_members=args.expect_members,
            quiet=args.quiet,
            client=args.client,
        )
    else:
        result = replay(
            source,
            from_ms=from_ms,
            to_ms=to_ms,
            offsets=offsets,
            spec=spec,
            slack_ms=args.slack_ms,
            partitions=parse_partitions(args.partitions),
            workers=args.workers,
            out_dir=args.out,
            quiet=args.quiet,
            client=args.client,
            time_basis=args.time_basis,
        )
    print(f"{topic}: {result.summary()}")
    for p, read in result.reads.items():
        print(f"  {topic}[{p}] offsets {read.start}..{read.end} -> {read.records:,} records, {len(read.parts)} part(s)")
    if result.members:
        print(f"group {result.members['group']}: this member read partitions {result.members['partitions']}")
    print(f"parts in {result.out_dir}")
    return 0
