"""``recovery kafka ...``: the local broker and a cluster overview."""

from __future__ import annotations

import argparse
import time
from typing import Any

from recovery import topics
from recovery.broker import LocalBroker
from recovery.config import KafkaSettings


def register(sub: Any) -> None:
    kafka = sub.add_parser(
        "kafka",
        help="start/stop the local broker, show cluster status",
        description="The local single-node broker (KRaft, 127.0.0.1) and a cluster overview.",
        epilog="example: recovery kafka status",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = kafka.add_subparsers(dest="kafka_command", metavar="VERB", required=True)
    up = verbs.add_parser("up", help="start the local broker (no-op if running)")
    up.add_argument("--timeout-s", type=float, default=60.0, help="seconds to wait for readiness")
    up.set_defaults(func=cmd_up)
    down = verbs.add_parser("down", help="stop the local broker")
    down.set_defaults(func=cmd_down)
    status = verbs.add_parser("status", help="broker reachable? topics, partitions, end offsets")
    status.add_argument("--all", action="store_true", help="include internal topics")
    status.set_defaults(func=cmd_status)


def cmd_up(args: argparse.Namespace) -> int:
    broker = LocalBroker.default()
    running = broker.bootstrap()
    if running:
        print(f"local broker already running at {running} (pid {broker.pid()})")
        return 0
    started = time.monotonic()
    address = broker.start(timeout_s=args.timeout_s)
    print(f"local broker ready at {address} in {time.monotonic() - started:.1f} s (pid {broker.pid()})")
    print(f"data and log: {broker.home}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    broker = LocalBroker.default()
    print("local broker stopped" if broker.stop() else "no local broker was running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = KafkaSettings.from_env()
    names = topics.list_topics(settings, include_internal=args.all)
    print(f"broker reachable: {settings.describe()}")
    if not names:
        print("no topics")
        return 0
    print(f"{'topic':40} {'partitions':>10} {'messages':>12}  end offsets")
    for name in names:
        info = topics.offsets(settings, name)
        ends = ",".join(str(info.end_offsets[p]) for p in sorted(info.end_offsets))
        print(f"{name:40} {info.partitions:>10} {info.messages:>12}  {ends}")
    return 0
