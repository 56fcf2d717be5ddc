"""The whole story of the Quix Streams example: generate, run the app with faults, run it clean, recover, verify.

    python examples/quix-streams/story.py --bootstrap 127.0.0.1:9092 [--events 3000 --devices 12 --seed 7]

Prints the oracle check (expected vs found per class) and writes it to ``WORK/oracle.json``; exits 1 when
a check fails. The oracle, the apply check and the app never use the toolkit; ``recovery check-spec`` and
``recovery recover`` run as the analyst would run them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import apply_check  # noqa: E402
import faults  # noqa: E402
import generate  # noqa: E402
import oracle  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

MINUTE_MS = 60_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    """Create the run's topics (kept forever: the readings are stamped in the past)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(n, partitions, 1, config={"retention.ms": "-1"}) for n in names]
    for name, fut in admin.create_topics(new).items():
        try:
            fut.result(30)
        except Exception as exc:  # an existing topic of an earlier run would mix two runs' records
            raise RuntimeError(f"cannot create topic {name}: {exc}; use another --prefix") from None


def write_spec(path: Path, topics: dict[str, str]) -> Path:
    """The example's spec with this run's topic names."""
    text = (HERE / "spec.toml").read_text()
    for name, topic in topics.items():
        text = re.sub(rf'^{name} = ".*"$', f'{name} = "{topic}"', text, count=1, flags=re.M)
    path.write_text(text)
    return path


def recovery_cli(args: list[str], bootstrap: str, recovery: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run([recovery, *args], env=env, capture_output=True, text=True, timeout=600)


def found_classes(fixset: Path) -> dict[str, set[oracle.ResultId]]:
    """What ``recovery recover`` found, by class, from its fix set's review comparison."""
    import polars as pl

    comparison = pl.read_parquet(fixset / "review" / "comparison.parquet")
    out: dict[str, set[oracle.ResultId]] = {c: set() for c in oracle.CLASSES}
    for key, metric, window, status in comparison.select("key", "metric", "window", "status").iter_rows():
        if status in out:
            out[status].add((key, metric, window))
    return out


def publish_in_layout(bootstrap: str, recovery: str, fixset: Path) -> int:
    """Approve and publish the fix set with ``recovery publish``: exactly once, in the outputs' own layout (the
    spec's ``[outputs]``), with its audit records. Returns the corrections published."""
    approved = recovery_cli(["approve", str(fixset), "--reviewer", "quix-example"], bootstrap, recovery)
    if approved.returncode != 0:
        raise RuntimeError(f"recovery approve failed: {approved.stderr.strip()}")
    published = recovery_cli(["publish", str(fixset)], bootstrap, recovery)
    print(published.stdout[-2000:] + published.stderr[-2000:])
    if published.returncode != 0:
        raise RuntimeError(f"recovery publish failed: {published.stderr.strip()}")
    import polars as pl

    return pl.read_parquet(fixset / "corrections.parquet").height


REVIEWER = "quix-example-reviewer"


def reports(bootstrap: str, recovery: str, spec: Path, from_ms: int, to_ms: int, work: Path) -> list[str]:
    """The analyst's runbooks on the incident, like ``make demo``: explore, recompute and compare, approve,
    publish (already published by the story: the notebook says so), reconcile. Returns the steps that failed."""
    span = ["-p", "incident_file", "", "-p", "spec_path", str(spec), "-p", "from_time", iso(from_ms)]
    span += ["-p", "to_time", iso(to_ms)]
    fixes = work / "fixes"
    failed = []
    for name, args in [
        ("01", ["report", "01_explore_incident", *span]),
        ("02", ["report", "02_recompute_compare", *span, "-p", "fixset_dir", str(work / "fixes-reviewed"),
                "-p", "overwrite", "true", "-p", "reviewer", REVIEWER]),
        ("03", ["report", "03_publish_fixes", "-p", "fixset", str(fixes), "-p", "approved_digest",
                (fixes / "digest.sha256").read_text().split()[0], "-p", "reviewer", "quix-example",
                "-p", "dry_run", "false"]),
        ("00", ["report", "00_reconciliation", "-p", "spec_path", str(spec), "-p", "hours",
                str((to_ms - from_ms) / 3_600_000), "-p", "end_time", iso(to_ms), "-p", "max_discrepancies", "0"]),
    ]:  # fmt: skip
        done = recovery_cli(args, bootstrap, recovery)
        if done.returncode:
            print(done.stdout[-1500:] + done.stderr[-1500:])
            failed.append(name)
    return failed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    p.add_argument("--events", type=int, default=3000)
    p.add_argument("--devices", type=int, default=12)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--prefix", default=f"quix-{uuid.uuid4().hex[:6]}", help="topic and group name prefix")
    p.add_argument("--work", type=Path, default=Path("work/quix-example"))
    p.add_argument("--recovery", default=shutil.which("recovery") or "recovery", help="the recovery CLI")
    p.add_argument("--reports", action="store_true", help="also run notebooks 01, 02, 03 and 00 into reports/")
    args = p.parse_args()
    if not args.bootstrap:
        p.error("--bootstrap (or KAFKA_BOOTSTRAP_SERVERS) is required; `make kafka-up` starts a local broker")
    work: Path = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    timings: dict[str, float] = {}
    mark = time.monotonic()

    def step(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[name] = round(now - mark, 1)
        mark = now
        print(f"  {name}: {timings[name]} s", flush=True)

    x = args.prefix
    t = {
        "raw": f"{x}.sensors.readings",
        "clean_raw": f"{x}.sensors.readings.clean",
        "output": f"{x}.sensors.stats",
        "clean_output": f"{x}.sensors.stats.clean",
        "lost": f"{x}.sensors.stats.misrouted",
        "corrections": f"{x}.sensors.stats.corrections",
        "audit": f"{x}.sensors.audit",
    }
    # the corrections and audit topics are the toolkit's: `recovery publish` creates them (compacted corrections)
    create_topics(args.bootstrap, [v for k, v in t.items() if k not in ("corrections", "audit")], args.partitions)

    clean = generate.readings(args.seed, args.devices, args.events)
    first, last = clean[0].event_ms, clean[-1].event_ms
    from_ms = (first // MINUTE_MS + 2) * MINUTE_MS
    to_ms = (last // MINUTE_MS - 4) * MINUTE_MS
    raw, injected = generate.with_input_faults(clean, args.seed, from_ms, to_ms)
    print(
        f"{len(clean)} readings of {args.devices} devices, {iso(first)} .. {iso(last)}; range {iso(from_ms)} .. "
        f"{iso(to_ms)}; injected {sum(f.kind == 'duplicate' for f in injected)} duplicates, "
        f"{sum(f.kind == 'late' for f in injected)} late readings"
    )
    step("generate")

    faulty_app = faults.AppRun(
        args.bootstrap, t["raw"], t["output"], f"{x}-live", work / "state-live", work / "live.log"
    )
    events = faults.faulty_run(faulty_app, raw, t["lost"])
    print("  faulty run: " + ", ".join(events))
    step("app with faults")
    clean_app = faults.AppRun(
        args.bootstrap, t["clean_raw"], t["clean_output"], f"{x}-clean", work / "state-clean", work / "clean.log"
    )
    faults.clean_run(clean_app, clean)
    step("clean app")

    faulty_out = oracle.read_topic(args.bootstrap, t["output"])
    clean_out = oracle.read_topic(args.bootstrap, t["clean_output"])
    expected = oracle.expected(faulty_out, clean_out, from_ms, to_ms)
    step("oracle")

    common = {"corrections": t["corrections"], "audit": t["audit"]}
    spec = write_spec(work / "spec.toml", {"raw": t["raw"], "output": t["output"], **common})
    spec_clean = write_spec(work / "spec-clean.toml", {"raw": t["clean_raw"], "output": t["clean_output"], **common})
    rng = ["--from", iso(from_ms), "--to", iso(to_ms)]
    checked = recovery_cli(
        ["check-spec", "--spec", str(spec_clean), *rng, "--threshold", "100"], args.bootstrap, args.recovery
    )
    print(checked.stdout + checked.stderr)
    step("check-spec (clean run)")
    fixset = work / "fixes"
    recovered = recovery_cli(
        ["recover", "--spec", str(spec), *rng, "--out", str(fixset)], args.bootstrap, args.recovery
    )
    print(recovered.stdout[-3000:] + recovered.stderr[-3000:])
    if recovered.returncode != 0:
        print("recovery recover failed", file=sys.stderr)
        return 1
    step("recover (faulty run)")
    found = found_classes(fixset)

    written = publish_in_layout(args.bootstrap, args.recovery, fixset)
    layout_corrections = oracle.read_topic(args.bootstrap, t["corrections"])
    compared, diffs = apply_check.check(faulty_out, clean_out, layout_corrections, from_ms, to_ms)
    step("apply corrections")

    rows: list[dict[str, Any]] = []
    for c in oracle.CLASSES:
        exp, got = expected[c], found[c]
        hit = len(exp & got)
        rows.append(
            {
                "class": c,
                "expected": len(exp),
                "found": len(got),
                "matched": hit,
                "precision": 100.0 if not got else round(100 * hit / len(got), 2),
                "recall": 100.0 if not exp else round(100 * hit / len(exp), 2),
            }
        )
    report = {
        "range": [iso(from_ms), iso(to_ms)],
        "readings": len(clean),
        "injected": len(injected),
        "classes": rows,
        "check_spec_passed": checked.returncode == 0,
        "corrections_in_layout": written,
        "apply_rows_compared": compared,
        "apply_differences": diffs[:20],
        "timings_s": timings,
    }
    (work / "oracle.json").write_text(json.dumps(report, indent=2))
    print(f"\noracle check, {iso(from_ms)} .. {iso(to_ms)}")
    print(f"  {'class':<10} {'expected':>8} {'found':>6} {'matched':>8} {'precision':>10} {'recall':>7}")
    for r in rows:
        print(
            f"  {r['class']:<10} {r['expected']:>8} {r['found']:>6} {r['matched']:>8} "
            f"{r['precision']:>9.1f}% {r['recall']:>6.1f}%"
        )
    print(f"  check-spec on the clean run: {'100 % ok' if checked.returncode == 0 else 'FAILED'}")
    print(
        f"  corrections in the outputs' layout: {written}; applied to the faulty outputs, {compared} rows in "
        f"range {'equal the clean run' if not diffs else f'differ from the clean run in {len(diffs)} rows'}"
    )
    for d in diffs[:5]:
        print(f"    {d}")
    failed_reports = reports(args.bootstrap, args.recovery, spec, from_ms, to_ms, work) if args.reports else []
    if args.reports:
        print(
            f"  reports (notebooks 01, 02, 03, 00): {'all ran' if not failed_reports else f'failed: {failed_reports}'}"
        )
    ok = checked.returncode == 0 and not diffs and all(r["precision"] == r["recall"] == 100.0 for r in rows)
    return 0 if ok and not failed_reports else 1


if __name__ == "__main__":
    sys.exit(main())
