"""``recovery live``: run the live worker of the pipeline (a consumer-group member)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from recovery.config import KafkaSettings
from recovery.errors import RecoveryError
from recovery.live.hooks import BugHook, CrashHook
from recovery.live.worker import DEFAULT_GROUP, MAX_POLL_RECORDS, run_live
from recovery.spec import load_spec

EPILOG = """\
examples:
  recovery live --spec pipeline.toml                      run until stopped (SIGTERM/Ctrl-C)
  recovery live --spec pipeline.toml --group g1 --until-end   process up to the end offsets seen at start
  start the same command twice with one --group: the two workers split the partitions

fault injection (used by `recovery simulate` and the tests):
  --crash 2:1500:40:commit-before   at raw offset 1500 of partition 2, commit 40 records ahead and SIGKILL
  --crash 2:1500:40:commit-after    publish the outputs of records 1500..1539, SIGKILL before committing
  --bug cents:FROM_MS:TO_MS         events with FROM_MS <= ts < TO_MS get their price in cents
  --bug short-window:FROM_MS:TO_MS  ... get an sma over one event less
"""


def _hook(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except RecoveryError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def register(sub: Any) -> None:
    p = sub.add_parser(
        "live",
        help="run the live worker (consume raw events, publish metric results)",
        description="The live pipeline worker: reads the raw topic in a consumer group, computes the spec's "
        "metrics, publishes results to the output topic and commits offsets after they are acknowledged.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spec", required=True, help="pipeline spec (TOML)")
    p.add_argument("--group", default=DEFAULT_GROUP, help=f"consumer group (default {DEFAULT_GROUP})")
    p.add_argument("--until-end", action="store_true", help="stop at the raw topic's end offsets taken at start")
    p.add_argument("--worker-id", help="name written into every output record (default host:pid)")
    p.add_argument("--instance-id", help="static group membership: a restart with the same id resumes at once")
    p.add_argument("--max-poll-records", type=int, default=MAX_POLL_RECORDS, help="records per poll")
    p.add_argument("--json", action="store_true", help="print the run's counters as one JSON line on stdout")
    p.add_argument("--crash", type=_hook(CrashHook.parse), metavar="P:OFFSET:SPAN:MODE", help="crash hook (see below)")
    p.add_argument(
        "--bug",
        type=_hook(BugHook.parse),
        action="append",
        default=[],
        metavar="KIND:FROM_MS:TO_MS",
        help="bad-deploy hook, repeatable (see below)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_live)


def cmd_live(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    spec = load_spec(args.spec)
    settings = KafkaSettings.from_env()
    stats = run_live(
        settings,
        spec,
        group=args.group,
        until_end=args.until_end,
        crash=args.crash,
        bugs=args.bug,
        worker_id=args.worker_id,
        instance_id=args.instance_id,
        max_poll_records=args.max_poll_records,
    )
    if args.json:
        print(json.dumps(stats.to_dict(), sort_keys=True))
    else:
        print(
            f"{stats.worker}: {stats.records} records in {stats.seconds:.1f} s ({stats.events_per_s:.0f}/s), "
            f"{stats.events} events, {stats.malformed_total} malformed, {stats.late_events} late, "
            f"{stats.outputs} outputs, {stats.open_windows} windows still open"
        )
    return 0
