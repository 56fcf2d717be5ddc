"""``recovery simulate``: produce a simulated incident with known ground truth."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from recovery.config import KafkaSettings
from recovery.errors import ConfigError
from recovery.sim.simulate import reset_topics, simulate
from recovery.sim.ticks import BASE_START_MS, DEFAULT_SHARES, FAULT_TYPES, SimulationParams
from recovery.spec import load_spec

EPILOG = """\
examples:
  recovery simulate --spec pipeline.toml --symbols 5 --events 20000 --seed 7 --faults all --out incidents/demo.json
  recovery simulate --spec pipeline.toml --reset-topics --out incidents/demo.json   (fresh topics, same incident)
  recovery simulate --spec pipeline.toml --faults late,crash --share late=0.3 --out incidents/late.json
  recovery simulate --spec pipeline.toml --events 1000000 --symbols 50 --faults none --no-live   (load only)

faults: drop, duplicate, reorder, late, malformed (stream faults, each on a share of its range's events),
crash (two: commit-before and commit-after), bad-deploy (two: short-window and cents); `all` or `none`.
Each fault gets its own event-time range; the incident file lists the affected events and the
discrepancies the output topic must show (overall and per fault) in its recommended recovery range.
"""


def _start(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date-time: {text!r} (e.g. 2026-01-05T09:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _faults(text: str) -> tuple[str, ...]:
    if text == "all":
        return FAULT_TYPES
    if text == "none":
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(set(names) - set(FAULT_TYPES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULT_TYPES)}")
    return names


def _share(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not sep or name not in DEFAULT_SHARES or not 0 < share <= 1:
        raise argparse.ArgumentTypeError(
            f"use FAULT=SHARE with FAULT in {', '.join(DEFAULT_SHARES)} and 0 < SHARE <= 1"
        )
    return name, share


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="produce a simulated incident (ticks with faults) and run the live worker over it",
        description="Generate seeded ticks with injected faults, produce them to the raw topic, run the live "
        "worker (crashes are real SIGKILLs) and write an incident file with the expected discrepancies.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spec", required=True, help="pipeline spec (TOML): topics, fields, metrics")
    p.add_argument("--symbols", type=int, default=5, help="number of symbols (default 5)")
    p.add_argument("--events", type=int, default=20_000, help="ticks to generate (default 20000)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7): same seed, same incident")
    p.add_argument("--rate", type=float, default=10.0, help="ticks per second of event time (default 10)")
    p.add_argument("--start", type=_start, default=BASE_START_MS, help="event time of the first tick (ISO, UTC)")
    p.add_argument("--faults", type=_faults, default=FAULT_TYPES, help="comma list of faults, `all` or `none`")
    p.add_argument("--share", type=_share, action="append", default=[], metavar="FAULT=SHARE", help="repeatable")
    p.add_argument("--out", help="incident file to write (JSON)")
    p.add_argument("--producers", type=int, default=2, help="producer processes (default 2)")
    p.add_argument(
        "--reset-topics",
        action="store_true",
        help="first delete the spec's raw, output, corrections and audit topics (repeatable demos)",
    )
    p.add_argument("--no-live", action="store_true", help="only produce the raw events (no worker, no predictions)")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.events < 1 or args.symbols < 1:
        raise ConfigError("--events and --symbols must be >= 1")
    params = SimulationParams(
        symbols=args.symbols,
        events=args.events,
        seed=args.seed,
        rate_per_s=args.rate,
        start_ms=args.start,
        faults=args.faults,
        shares=dict(args.share),
    )
    spec = load_spec(args.spec)
    settings = KafkaSettings.from_env()
    if args.reset_topics:
        deleted = reset_topics(settings, spec)
        print(f"deleted topics: {', '.join(deleted) or 'none existed'}")
    if args.producers < 1:
        raise ConfigError("--producers must be >= 1")
    incident = simulate(
        settings, spec, params, out=args.out, live=not args.no_live, producers=args.producers, progress=print
    )
    print_summary(incident)
    if args.out:
        print(f"incident written to {args.out}")
    return 0


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_summary(incident: dict[str, Any]) -> None:
    """What was injected where, and what the output topic must show."""
    counts = incident["counts"]
    run = incident["run"]
    print(
        f"\nincident {incident['incident']}: {counts['generated']} ticks of {len(incident['symbols'])} symbols, "
        f"{counts['records']} records on {incident['topics']['raw']} "
        f"({run.get('produce_events_per_s') or 0:,.0f} records/s produced)"
    )
    print(f"event time {_utc(incident['time_range']['from_ms'])} .. {_utc(incident['time_range']['to_ms'])} UTC")
    if incident["faults"]:
        print(f"\n{'fault':26} {'event time (UTC)':31} {'events':>7}  predicted discrepancies")
    for f in incident["faults"]:
        predicted = f.get("predicted", {}).get("counts", {})
        found = ", ".join(f"{n} {s}" for s, n in predicted.items() if s != "ok" and n) or "-"
        span = f"{_utc(f['range']['from_ms'])[5:]} .. {_utc(f['range']['to_ms'])[11:]}"
        print(f"{f['id']:26} {span:31} {f.get('count', 0):>7}  {found}")
    if "predicted" in incident:
        p = incident["predicted"]
        r = incident["recovery_range"]
        found = ", ".join(f"{n} {s}" for s, n in p["counts"].items() if n)
        print(f"\nrecommended recovery range [{_utc(r['from_ms'])}, {_utc(r['to_ms'])}) UTC")
        print(f"  --from-ms {r['from_ms']} --to-ms {r['to_ms']}")
        print(f"expected: {p['outputs']} outputs published; {found}")
        live = p["live"]
        print(
            f"live worker: {live['malformed_total']} malformed skipped {live['malformed']}, {live['late_events']} late"
        )
