"""``recovery approve``: record that a named reviewer approved a fix set's digest."""

from __future__ import annotations

import argparse
from typing import Any

from recovery.config import KafkaSettings
from recovery.fixes.approval import approve

EPILOG = """\
example:
  recovery approve fixes/inc-1 --reviewer alice
The approval (reviewer, digest, time) goes to the audit topic and to fixes/inc-1/approval.json.
A fix set changed afterwards has another digest and is refused by `recovery publish` until approved again.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "approve",
        help="approve a fix set's digest as a named reviewer",
        description="Check a fix set against its digest and record its approval by a reviewer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("fixset", metavar="DIR", help="fix set directory (from `recovery recover`)")
    p.add_argument("--reviewer", required=True, help="who reviewed and approves it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    approval = approve(args.fixset, args.reviewer, KafkaSettings.from_env())
    audit = approval.audit
    print(f"approved {approval.digest} by {approval.reviewer} at {approval.approved_at}")
    print(f"audit record: {audit.get('topic')}[{audit.get('partition')}]@{audit.get('offset')}")
    print(f"next: recovery publish {args.fixset}")
    return 0
