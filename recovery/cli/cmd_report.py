"""``recovery report``: run a notebook runbook with checked parameters into reports/<run-id>/."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recovery.notebook import runbook

EPILOG = """\
examples:
  recovery report notebooks/02_recompute_compare.ipynb -f notebooks/params/demo_02.yaml
  recovery report 00_reconciliation -f notebooks/params/reconcile.yaml -p hours 6 --out reports/
  recovery report 01_explore_incident --list-params

exit status: 0 ok, 1 the notebook failed (its report shows where), 2 bad parameters (nothing ran),
3 the notebook raised an alert (e.g. reconciliation found more discrepancies than its threshold).
Secrets are never parameters: credentials come from the environment (KAFKA_SASL_PASSWORD, ...).
"""


def register(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="run a notebook runbook into an HTML report (papermill)",
        description="Check a notebook's parameters, execute it with papermill into OUT/<run-id>/ (executed "
        "notebook + self-contained HTML) and update OUT/index.html.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("notebook", metavar="NOTEBOOK", help="a notebook path, or a name in notebooks/")
    report.add_argument("-f", "--parameters-file", metavar="YAML", help="parameters (name: value) in a YAML file")
    report.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="one parameter (repeatable); overrides the file",
    )
    report.add_argument("--out", default="reports", metavar="DIR", help="reports folder (default: reports)")
    report.add_argument("--run-id", help="name of the run folder (default: <UTC time>-<notebook>-<random>)")
    report.add_argument("--timeout-s", type=float, help="per-cell timeout in seconds (default: none)")
    report.add_argument("--list-params", action="store_true", help="list the notebook's parameters and exit")
    report.add_argument("--check", action="store_true", help="check the parameters and exit without running")
    report.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    if args.list_params:
        for param in runbook.notebook_parameters(args.notebook).values():
            note = f"  # {param.help}" if param.help else ""
            print(f"{param.name}: {param.type_name or 'any'} = {param.default}{note}")
        return 0
    values: dict[str, Any] = runbook.load_params_file(args.parameters_file) if args.parameters_file else {}
    overrides = runbook.parse_overrides(args.parameter)
    values.update(overrides)
    if args.check:
        checked = runbook.check_parameters(args.notebook, values, from_text=overrides)
        print(f"parameters ok: {runbook.format_parameters(checked)}")
        return 0
    run = runbook.run_notebook(
        args.notebook, values, out_dir=args.out, from_text=overrides, run_id=args.run_id, timeout_s=args.timeout_s
    )
    folder = Path(args.out) / run.run_id
    print(f"{run.notebook}: {run.status} in {run.duration_s:.1f} s" + (f" ({run.error})" if run.error else ""))
    if run.html:
        print(f"report: {folder / run.html} ({runbook.human_size(run.html_bytes)})")
    if run.digest:
        print(f"digest: {run.digest}")
    if run.secrets_scrubbed:
        print(f"warning: {run.secrets_scrubbed} secret value(s) from the environment were scrubbed from the report")
    print(f"index: {Path(args.out) / 'index.html'}")
    return run.exit_code
