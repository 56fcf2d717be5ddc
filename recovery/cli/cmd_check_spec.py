"""``recovery check-spec``: does the spec reproduce the pipeline? The share of ok results on a clean range."""

from __future__ import annotations

import argparse
from typing import Any

from recovery.cli._common import add_range, add_replay_tuning, add_sources, add_tolerances, parse_range
from recovery.pipeline.calibrate import DEFAULT_THRESHOLD_PCT, check_spec
from recovery.spec import load_spec

EPILOG = """\
examples:
  recovery check-spec --spec orders.toml --from 2026-01-05T09:00 --to 2026-01-05T10:00
  recovery check-spec --spec orders.toml --from 2026-01-05T09:00 --to 2026-01-05T10:00 --threshold 99 --show 10
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check-spec",
        help="check that the spec reproduces the pipeline on a range believed clean (exit 1 below a threshold)",
        description="Recompute a range the team believes clean and compare with what the pipeline published: "
        "the share of ok results per metric, and the first mismatches with the events behind them. Run it "
        "before trusting a fix set made with a new spec.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spec", required=True, metavar="TOML", help="pipeline spec file")
    add_range(p)
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD_PCT,
        metavar="PCT",
        help=f"minimum share of ok results per metric, in %% (default {DEFAULT_THRESHOLD_PCT})",
    )
    p.add_argument("--show", type=int, default=5, metavar="N", help="mismatches to show with their events (default 5)")
    add_sources(p)
    add_tolerances(p)
    add_replay_tuning(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    rng = parse_range(args)
    found = check_spec(
        spec,
        rng.from_ms,
        rng.to_ms,
        threshold_pct=args.threshold,
        raw_source=args.source_raw,
        outputs_source=args.source_outputs,
        slack_ms=args.slack_ms,
        abs_tol=args.abs_tol,
        rel_tol=args.rel_tol,
        client=args.client,
        show=args.show,
    )
    for line in found.lines():
        print(line)
    return 0 if found.passed else 1
