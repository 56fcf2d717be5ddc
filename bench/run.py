"""``make bench``: load scenarios into a broker, measure every stage against its baselines, print one table,
write ``docs/benchmarks.md``.

Examples::

    python -m bench.run                                   # 1m and 10m scenarios, 3 runs per row
    python -m bench.run --scenarios 200k --runs 1         # a quick run
    python -m bench.run --scenarios 1m --stages replay,baselines --workers 2 --clients confluent
    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python -m bench.run --keep-topics

Without ``KAFKA_BOOTSTRAP_SERVERS`` the benchmark starts its own broker in ``--broker-home`` and stops it
at the end (``--keep-broker`` leaves it running for another run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py` works as well as `python -m bench.run`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report
from bench.baselines import kcat_command, parse_perf_test, perf_test_command
from bench.measure import ROOT, Measurement, Run, run_command, stage_command, tree_rss_bytes
from bench.scenario import SIZES, Scenario, write_spec

STAGE_GROUPS = (
    "replay",  # replay() of the raw topic: clients x workers
    "readers",  # each client's reader in one process (first scenario)
    "baselines",  # kcat and kafka-consumer-perf-test on the raw and output topics
    "outputs",  # replay() of the output topic
    "parquet",  # replay to Parquet parts, one worker: memory does not grow with events
    "group",  # two `recovery replay --group` processes vs one
    "validate",  # validate + dedup
    "decode",  # decode_outputs
    "recompute",  # each metric kind and all together, plus the deque loop
    "compare",
    "fixset",
    "publish",  # 10k and 100k corrections
    "recover",  # the one-shot recover of the whole incident
    "profile",  # cProfile of replay (both clients), recompute, decode, publish (first scenario)
    "plain",  # the CLI as a new user runs it, no flags: recover, recompute (vs kcat), compare, export, replay
)
CLIENTS = ("kafka-python", "confluent", "native")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark the recovery toolkit on generated incidents; prints one table and writes "
        "docs/benchmarks.md.",
        epilog=__doc__.split("Examples::", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scenarios", default="1m,10m", help=f"comma list: {', '.join(SIZES)} or event counts (default 1m,10m)"
    )
    p.add_argument("--events", type=int, help="one scenario of this many events instead of --scenarios")
    p.add_argument("--runs", type=int, default=3, help="runs per row; the table shows medians (default 3)")
    p.add_argument("--stages", default="all", help=f"comma list of: {', '.join(STAGE_GROUPS)} (default all)")
    p.add_argument("--workers", default="1,2,4", help="replay worker counts to measure (default 1,2,4)")
    p.add_argument("--clients", default=",".join(CLIENTS), help="replay clients to measure (default all three)")
    p.add_argument("--publish", default="10000,100000", help="fix set sizes to publish (default 10000,100000)")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"), help="Markdown file to write ('' = none)")
    p.add_argument("--json", dest="json_out", help="also write the raw results as JSON here")
    p.add_argument("--work", default="/tmp/bench-work", help="scratch directory for Parquet inputs and parts")
    p.add_argument("--broker-home", default="/tmp/bench-kafka", help="where the benchmark's own broker lives")
    p.add_argument("--heap", default="2g", help="heap of the benchmark's own broker (default 2g)")
    p.add_argument("--keep-broker", action="store_true", help="leave the benchmark's broker running")
    p.add_argument(
        "--memory-cap-gb",
        type=float,
        default=10.0,
        help="RSS cap of a stage's process tree; a stage above it is stopped and reported (default 10)",
    )
    p.add_argument(
        "--resume",
        metavar="JSON",
        help="continue an interrupted run: rows measured in this checkpoint (--json, or WORK/results-partial.json) "
        "are kept, the others measured",
    )
    p.add_argument(
        "--merge",
        metavar="JSON",
        help="results (--json) of an earlier run: its rows that this run does not measure again are kept",
    )
    p.add_argument(
        "--plain-steps",
        default="recover,recompute,compare,export,replay",
        help="CLI steps the plain stage runs with no flags (default recover,recompute,compare,export,replay)",
    )
    p.add_argument("--conditions", default="", help="a sentence on the conditions, written to the doc")
    args = p.parse_args(argv)
    args.stage_set = set(STAGE_GROUPS) if args.stages == "all" else {s.strip() for s in args.stages.split(",")}
    unknown = args.stage_set - set(STAGE_GROUPS)
    if unknown:
        p.error(f"unknown stage(s) {', '.join(sorted(unknown))}; known: {', '.join(STAGE_GROUPS)}")
    args.worker_list = [int(w) for w in args.workers.split(",") if w.strip()]
    args.client_list = [c.strip() for c in args.clients.split(",") if c.strip()]
    if set(args.client_list) - set(CLIENTS):
        p.error(f"--clients: use {', '.join(CLIENTS)}")
    args.publish_sizes = [int(n) for n in args.publish.split(",") if n.strip()]
    try:
        names = [str(args.events)] if args.events else [s for s in args.scenarios.split(",") if s.strip()]
        args.scenario_list = [Scenario.parse(n) for n in names]
    except ValueError as exc:
        p.error(str(exc))
    if args.runs < 1:
        p.error("--runs must be >= 1")
    return args


class Bench:
    """Runs the measurements of one benchmark and collects the table rows."""

    def __init__(self, args: argparse.Namespace, bootstrap: str) -> None:
        self.args, self.bootstrap = args, bootstrap
        self.rows: list[dict[str, Any]] = []
        self.checks: list[str] = []
        self.profiles: dict[str, list[dict[str, Any]]] = {}
        self.merged_from = ""
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONPATH": str(ROOT)}
        self.kept: dict[tuple[Any, ...], dict[str, Any]] = {}
        if args.resume and Path(args.resume).is_file():
            earlier = json.loads(Path(args.resume).read_text())
            self.kept = {_row_key(r): r for r in earlier.get("rows", []) if r["status"] == "ok"}
            self.checks = list(earlier.get("checks", []))
            self.profiles = dict(earlier.get("profiles", {}))
            print(f"resuming: {len(self.kept)} measured rows kept from {args.resume}", flush=True)
        self.checkpoint_path = Path(args.json_out or Path(args.work) / "results-partial.json")

    # ------------------------------------------------------------------------------------------ running

    def _params(self, sc: Scenario, **extra: Any) -> dict[str, Any]:
        work = Path(self.args.work) / sc.name
        return {"scenario": sc.name, "events": sc.events, "bootstrap": self.bootstrap, "work": str(work), **extra}

    def once(self, stage: str, params: dict[str, Any]) -> Run:
        run = run_command(stage_command(stage, params), env=self.env, memory_cap_gb=self.args.memory_cap_gb)
        if run.returncode != 0:
            tail = (run.stderr or run.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"stage {stage} failed (exit {run.returncode}):\n" + "\n".join(tail))
        return run

    def prepared(self, sc: Scenario, raw_n: int, out_n: int) -> dict[str, Any]:
        """The stage inputs of ``sc``: prepared once, reused by later runs while the topics hold the same records."""
        marker = Path(self.args.work) / sc.name / "prepared.json"
        if marker.is_file():
            earlier = json.loads(marker.read_text())
            if earlier.get("records") == [raw_n, out_n]:
                print(f"  reusing the inputs prepared at {earlier['at']} ({marker.parent})", flush=True)
                return dict(earlier["result"])
        result = self.once("prepare", self._params(sc)).result
        marker.write_text(json.dumps({"records": [raw_n, out_n], "at": report.now_iso(), "result": result}) + "\n")
        return dict(result)

    def checkpoint(self) -> None:
        """Write what was measured so far (``--resume`` continues from it after an interruption)."""
        data = {"rows": self.rows, "checks": list(dict.fromkeys(self.checks)), "profiles": self.profiles}
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_name(f".{self.checkpoint_path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        tmp.replace(self.checkpoint_path)

    def _kept(self, name: str, sc: Scenario, columns: dict[str, Any]) -> Measurement | None:
        """The measurement of this row from the run being resumed, if it has one."""
        row = self.kept.get((sc.name, name, columns.get("client", ""), str(columns.get("workers", ""))))
        if row is None:
            return None
        runs = [
            Run(r["wall_s"], r["peak_rss_mb"], 0, {"seconds": r["seconds"]}, cpu_s=r.get("cpu_s") or 0.0)
            for r in row["runs"]
        ]
        columns.pop("notes", None)
        return Measurement(name, sc.name, row["items"], runs, row.get("notes", ""), "ok", row.get("extra", {}))

    def add(self, m: Measurement, **columns: Any) -> Measurement:
        row = {**m.to_dict(), **columns}
        self.rows.append(row)
        self.checkpoint()
        rate = f"{m.per_s:,.0f}/s" if m.per_s else ""
        secs = f"{m.seconds:.2f} s" if m.seconds is not None else m.status
        rss = f"{m.peak_rss_mb:,.0f} MB" if m.peak_rss_mb is not None else ""
        label = " ".join(str(columns.get(k, "")) for k in ("client", "workers") if columns.get(k, "") != "")
        print(f"  [{m.scenario}] {m.name} {label}: {secs} {rate} {rss} {m.notes}".rstrip(), flush=True)
        return m

    def stage(self, name: str, sc: Scenario, stage: str, params: dict[str, Any], **columns: Any) -> Measurement:
        """Run ``stage`` ``--runs`` times and add its row (pending/failed rows say why)."""
        kept = self._kept(name, sc, columns)
        if kept is not None:
            return self.add(kept, **columns)
        runs: list[Run] = []
        status, notes = "ok", columns.pop("notes", "")
        extra: dict[str, Any] = {}
        for _ in range(self.args.runs):
            run = run_command(stage_command(stage, params), env=self.env, memory_cap_gb=self.args.memory_cap_gb)
            if run.returncode != 0:
                status = "failed"
                notes = ((run.stderr or run.stdout).strip().splitlines() or ["no output"])[-1][:200]
                if run.capped:
                    notes = f"stopped above the {self.args.memory_cap_gb:g} GB memory cap (RSS of the process tree)"
                    extra["peak_rss_mb_at_failure"] = round(run.peak_rss_mb)
                break
            if run.result.get("status") == "pending":
                status, notes = "pending", run.result.get("reason", "")
                break
            runs.append(run)
            extra = {k: v for k, v in run.result.items() if k not in ("seconds", "items", "status", "maxrss_kb")}
        items = int(runs[-1].result.get("items", 0)) if runs else 0
        m = Measurement(name, sc.name, items, runs, notes, status, extra)
        return self.add(m, **columns)

    def command(
        self, name: str, sc: Scenario, cmd: list[str], items: int, discard_stdout: bool = False, **columns: Any
    ) -> Measurement:
        """Run an external command ``--runs`` times (wall time, peak RSS of its process tree)."""
        kept = self._kept(name, sc, columns)
        if kept is not None:
            return self.add(kept, **columns)
        runs = []
        status, notes = "ok", columns.pop("notes", "")
        for _ in range(self.args.runs):
            run = run_command(cmd, env=self.env, discard_stdout=discard_stdout)
            if run.returncode != 0:
                status, notes = "failed", (run.stderr.strip().splitlines() or ["?"])[-1][:200]
                break
            runs.append(run)
        m = Measurement(name, sc.name, items, runs, notes, status)
        return self.add(m, **columns)

    # --------------------------------------------------------------------------------------- scenarios

    def scenario(self, sc: Scenario) -> None:
        a, stages = self.args, self.args.stage_set
        print(f"scenario {sc.name}: {sc.events:,} events, {sc.symbols} symbols, {sc.partitions} partitions", flush=True)
        loaded = self.once("load", self._params(sc))
        for line in loaded.stdout.splitlines():
            if not line.startswith("BENCH_RESULT"):
                print(line, flush=True)
        raw_n, out_n = int(loaded.result["raw_records"]), int(loaded.result["output_records"])
        r = self.prepared(sc, raw_n, out_n)
        print(
            f"  prepared inputs in {r['seconds']:.1f} s: {r['events']:,} events, {r['quarantined']:,} quarantined, "
            f"{r['duplicates']:,} duplicates, truth {r['truth']:,} results, originals {r['originals']:,}, "
            f"statuses {r['statuses']}",
            flush=True,
        )
        self.checks.append(
            f"{sc.name}: {raw_n:,} raw records ({r['events']:,} valid unique events, {r['quarantined']:,} malformed, "
            f"{r['duplicates']:,} duplicates, {r['missing_events']:,} lost); {out_n:,} output records; "
            f"comparison {r['statuses']}"
        )
        raw, out = sc.raw_topic, sc.output_topic
        if "replay" in stages:
            for client in a.client_list:
                for w in a.worker_list:
                    self.stage(
                        "replay raw",
                        sc,
                        "replay",
                        self._params(sc, topic=raw, workers=w, client=client),
                        client=client,
                        workers=w,
                    )
        if "readers" in stages and sc == a.scenario_list[0]:
            for client in a.client_list:
                self.stage(
                    "reader only (no replay bookkeeping)",
                    sc,
                    "reader",
                    self._params(sc, topic=raw, client=client),
                    client=client,
                    workers=1,
                )
        if "baselines" in stages:
            self.baselines(sc, raw, raw_n, "raw")
        if "outputs" in stages:
            for client in a.client_list:
                self.stage(
                    "replay outputs",
                    sc,
                    "replay",
                    self._params(sc, topic=out, workers=2, client=client),
                    client=client,
                    workers=2,
                )
        if "baselines" in stages:
            self.baselines(sc, out, out_n, "outputs")
        if "parquet" in stages:
            client = "confluent" if "confluent" in a.client_list else "kafka-python"
            work = Path(a.work) / sc.name / "parquet-parts"
            self.stage(
                "replay raw to Parquet",
                sc,
                "replay",
                self._params(sc, topic=raw, workers=1, client=client, out_dir=str(work)),
                client=client,
                workers=1,
                notes="streams partition by partition",
            )
        if "group" in stages:
            self.group(sc, raw, raw_n)
        if "validate" in stages:
            self.stage("validate + dedup", sc, "validate-dedup", self._params(sc))
            self.stage(
                "validate (partition by partition) + dedup",
                sc,
                "validate-dedup",
                self._params(sc, by_partition=True),
                notes="what a per-partition engine would need",
            )
        if "validate" in stages:
            self.stage("validate (partition by partition)", sc, "validate-only", self._params(sc))
        if "decode" in stages:
            self.stage("decode outputs", sc, "decode-outputs", self._params(sc))
            self.stage(
                "decode outputs (partition by partition)",
                sc,
                "decode-outputs",
                self._params(sc, by_partition=True),
                notes="what a per-partition engine would need",
            )
        if "recompute" in stages:
            for kinds in (["sma"], ["mean"], ["vwap"], ["sma", "mean", "vwap"]):
                label = "all three kinds" if len(kinds) > 1 else kinds[0]
                m = self.stage(f"recompute {label}", sc, "recompute", self._params(sc, kinds=kinds))
                if m.extra.get("first_call_s"):
                    first = m.extra["first_call_s"]
                    self.rows[-1]["notes"] = (
                        f"median of 3 calls in one process; first call {first:.3f} s ({m.items / first:,.0f}/s)"
                    )
            m = self.stage(
                "deque loop (seed), all three kinds",
                sc,
                "deque-loop",
                self._params(sc, kinds=["sma", "mean", "vwap"]),
            )
            check = m.extra.get("check", {})
            if check:
                self.checks.append(
                    f"{sc.name}: the deque loop and the recompute give the same results: "
                    f"{'yes' if check.get('same') else 'NO'} ({check.get('loop_rows', 0):,} results, "
                    f"largest difference {check.get('max_abs_diff')})"
                )
        if "compare" in stages:
            self.stage("compare + summary", sc, "compare", self._params(sc))
        if "fixset" in stages:
            self.stage("fix set (build + write)", sc, "fix-set", self._params(sc))
        if "publish" in stages:
            for client in a.client_list:
                for n in a.publish_sizes:
                    m = self.stage(
                        f"publish {n:,} corrections",
                        sc,
                        "publish",
                        self._params(sc, corrections=n, client=client),
                        client=client,
                    )
                    if m.extra.get("send_per_s"):
                        self.rows[-1]["notes"] = f"send only: {m.extra['send_per_s']:,}/s; verified read-back"
        if "recover" in stages:
            runs = [(client, "auto", 2) for client in a.client_list]
            if sc.events <= 2_000_000:  # in memory needs ~1.5 GB per million events: small scenarios only
                runs.append(("confluent" if "confluent" in a.client_list else "kafka-python", "in-memory", 2))
            for client, engine, workers in runs:
                m = self.stage(
                    "recover (one shot, raw + outputs)" if engine == "auto" else "recover, in memory (before)",
                    sc,
                    "recover",
                    self._params(sc, client=client, workers=workers, engine=engine),
                    client=client,
                    workers=workers,
                )
                timings = m.extra.get("timings_s")
                if timings:
                    steps = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total")
                    self.rows[-1]["notes"] = f"{m.extra.get('engine', '')}: {steps}"

        if "plain" in stages:
            self.plain(sc, raw_n, out_n)

        if "profile" in stages and sc == a.scenario_list[0] and not self.profiles:
            self.profile(sc)

    def profile(self, sc: Scenario) -> None:
        """cProfile of the steps whose targets are hardest: where their time goes (first scenario only)."""
        raw = sc.raw_topic
        wanted = [
            ("kafka-python replay, 1 process, raw topic", "own", {"target": "replay", "client": "kafka-python"}),
            ("confluent replay, 1 process, raw topic", "own", {"target": "replay", "client": "confluent"}),
            ("recompute, all three kinds", "cumulative", {"target": "recompute"}),
            ("decode outputs", "cumulative", {"target": "decode"}),
            ("publish 100,000 corrections", "cumulative", {"target": "publish", "corrections": 100_000}),
        ]
        for title, view, params in wanted:
            if params.get("client", "kafka-python") not in self.args.client_list:
                continue
            cmd = stage_command("profile", self._params(sc, topic=raw, top=12, **params))
            run = run_command(cmd, env=self.env, memory_cap_gb=self.args.memory_cap_gb)
            if run.returncode == 0 and run.result.get("status") == "ok":
                label = "own time" if view == "own" else "cumulative time of the package's functions"
                key = f"{title} ({sc.name}; cProfile, {label}; {run.result['seconds']:.1f} s under the profiler)"
                self.profiles[key] = run.result[view]

    def plain(self, sc: Scenario, raw_n: int, out_n: int) -> None:
        """The CLI steps with no performance flags (the defaults choose client and workers), whole process tree."""
        work = Path(self.args.work) / sc.name
        spec_file = write_spec(sc, work / "plain-spec.toml")
        where = ["--spec", str(spec_file), "--from", str(sc.from_ms), "--to", str(sc.to_ms), "--quiet"]
        cli = [sys.executable, "-m", "recovery"]
        out = work / "plain-out"

        def fresh(path: Path) -> Path:
            shutil.rmtree(path, ignore_errors=True)
            return path

        steps = [
            ("recovery recover, no flags", ["recover", *where, "--out", str(fresh(out))], raw_n + out_n),
            ("recovery recompute, no flags", ["recompute", *where, "--out", str(out / "truth.parquet")], raw_n),
            ("recovery compare, no flags", ["compare", *where, "--out", str(out / "cmp.parquet")], raw_n + out_n),
            ("recovery export to Parquet, no flags", ["export", *where, "--out", str(out / "export")], raw_n),
            ("recovery replay to Parquet, no flags", ["replay", *where, "--out", str(out / "replay")], raw_n),
        ]
        wanted = {step.strip() for step in self.args.plain_steps.split(",")}
        # kcat reads the raw topic right after each recompute run: the ratio's two sides see the same load, whatever
        # the machine's other work does meanwhile (a shared machine's speed drifts over minutes)
        kcat = kcat_command(self.bootstrap, sc.raw_topic)
        for name, args, items in steps:
            if args[0] not in wanted:
                continue
            runs, between = [], []
            for _ in range(self.args.runs):
                fresh(out)
                run = run_command(cli + args, env=self.env, memory_cap_gb=self.args.memory_cap_gb)
                if run.returncode != 0:
                    tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
                    self.add(Measurement(name, sc.name, items, [], tail[0][:200], "failed"), client="auto")
                    break
                runs.append(run)
                if args[0] == "recompute" and kcat is not None:
                    between.append(run_command(kcat, env=self.env, discard_stdout=True))
            else:
                notes = "wall and CPU of the whole command (interpreter start, workers, connections)"
                self.add(Measurement(name, sc.name, items, runs, notes), client="auto", workers="auto")
                if between and all(r.returncode == 0 for r in between):
                    self.add(Measurement(KCAT_BETWEEN, sc.name, raw_n, between), client="kcat (librdkafka)", workers=1)
        fresh(out)

    def baselines(self, sc: Scenario, topic: str, records: int, label: str) -> None:
        cmd = kcat_command(self.bootstrap, topic)
        if cmd is None:
            self.add(Measurement(f"kcat -C -e ({label})", sc.name, records, [], "kcat not installed", "skipped"))
        else:
            self.command(
                f"kcat -C -e to /dev/null ({label})",
                sc,
                cmd,
                records,
                discard_stdout=True,
                client="kcat (librdkafka)",
                workers=1,
            )
        m = self.command(
            f"kafka-consumer-perf-test ({label})",
            sc,
            perf_test_command(self.bootstrap, topic, records),
            records,
            client="Java consumer",
            workers=1,
        )
        rates = [parse_perf_test(r.stdout).get("fetch.nMsg.sec", 0.0) for r in m.runs]
        if rates:
            rates.sort()
            self.rows[-1]["notes"] = f"own rate {rates[len(rates) // 2]:,.0f}/s (fetch.nMsg.sec, without JVM start)"
            self.rows[-1]["own_per_s"] = rates[len(rates) // 2]

    def group(self, sc: Scenario, topic: str, records: int) -> None:
        """One `recovery replay` process, then two in one consumer group: same records, and how long each took."""
        names = ("recovery replay CLI, 1 process", "recovery replay CLI, 2 processes in one group")
        columns = ({"client": "kafka-python", "workers": 1}, {"client": "kafka-python", "workers": "2 x 1"})
        kept = [self._kept(n, sc, dict(c)) for n, c in zip(names, columns, strict=True)]
        if all(kept):
            for m, c in zip(kept, columns, strict=True):
                assert m is not None
                self.add(m, **c)
            return
        base = Path(self.args.work) / sc.name / "group"
        shutil.rmtree(base, ignore_errors=True)
        offsets = [f"{p}:0-" for p in range(sc.partitions)]

        def cli(out: Path, *extra: str) -> list[str]:
            return [
                sys.executable,
                "-m",
                "recovery",
                "replay",
                "--topic",
                topic,
                "--offsets",
                *offsets,
                "--out",
                str(out),
                "--quiet",
                *extra,
            ]

        single_runs, group_runs = [], []
        for i in range(self.args.runs):
            single = base / f"single-{i}"
            run = run_command(cli(single), env=self.env)
            if run.returncode != 0:
                self.add(Measurement("recovery replay (CLI)", sc.name, records, [], run.stderr[-200:], "failed"))
                return
            single_runs.append(run)
            group_name = f"bench-{sc.name}-{time.time_ns()}"
            members = [base / f"member-{i}-{k}" for k in range(2)]
            group_runs.append(
                self._concurrent([cli(d, "--group", group_name, "--expect-members", "2") for d in members])
            )
            check = self.once("same-records", self._params(sc, dirs=[str(d) for d in members], reference=[str(single)]))
            same = check.result.get("same")
            if i == 0:
                self.checks.append(
                    f"{sc.name}: two `recovery replay --group` processes read {check.result.get('items', 0):,} "
                    "records, "
                    f"the same as one process: {'yes' if same else 'NO: ' + check.result.get('detail', '')}"
                )
            for path in [single, *members]:
                shutil.rmtree(path, ignore_errors=True)
        self.add(
            Measurement("recovery replay CLI, 1 process", sc.name, records, single_runs),
            client="kafka-python",
            workers=1,
        )
        self.add(
            Measurement("recovery replay CLI, 2 processes in one group", sc.name, records, group_runs),
            client="kafka-python",
            workers="2 x 1",
        )

    def _concurrent(self, cmds: list[list[str]]) -> Run:
        """Start ``cmds`` together; wall time until all ended, peak of the summed RSS of their trees."""
        started = time.monotonic()
        procs = [
            subprocess.Popen(c, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for c in cmds
        ]
        peak = 0
        while any(p.poll() is None for p in procs):
            peak = max(peak, sum(tree_rss_bytes(p.pid) for p in procs if p.poll() is None))
            time.sleep(0.05)
        outputs = [p.communicate() for p in procs]
        code = max(p.returncode for p in procs)
        err = "\n".join(e for _, e in outputs)
        return Run(time.monotonic() - started, peak / 2**20, code, {}, "", err)

    def digest_checks(self) -> None:
        """Per scenario: did every recover row (any client, engine, run) give the same fix set digest?"""
        for scenario in dict.fromkeys(r["scenario"] for r in self.rows):
            rows = [
                r for r in self.rows if r["scenario"] == scenario and r["name"].startswith(("recover (", "recover,"))
            ]
            digests = {r.get("extra", {}).get("digest") for r in rows} - {None}
            if len(rows) > 1 and digests:
                runs = ", ".join(f"{r.get('client')}/{r.get('extra', {}).get('engine', '?')}" for r in rows)
                same = "yes" if len(digests) == 1 else f"NO ({len(digests)} digests)"
                self.checks.append(
                    f"{scenario}: recover gives one fix set digest with every client and engine: {same} ({runs})"
                )

    def memory_checks(self) -> None:
        """Peak RSS against scenario size: streaming replay stays flat, in-memory steps grow with events."""
        for name in ("replay raw to Parquet", "replay raw", "validate + dedup", "compare + summary"):
            rows = [r for r in self.rows if r["name"] == name and r["status"] == "ok" and r.get("workers") in (1, None)]
            for client in sorted({r.get("client") or "" for r in rows}):
                same = [r for r in rows if (r.get("client") or "") == client]
                if len({r["scenario"] for r in same}) < 2:
                    continue
                sizes = ", ".join(f"{r['scenario']} ({r['items']:,} items) {r['peak_rss_mb']:,.0f} MB" for r in same)
                how = f", {client}, 1 worker" if client else ""
                self.checks.append(f"peak RSS of `{name}`{how} by scenario: {sizes}")

    # ----------------------------------------------------------------------------------------- targets

    def _rows(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in self.rows
            if r["name"] == name and r["status"] == "ok" and all(r.get(k) == v for k, v in match.items())
        ]

    def targets(self) -> list[dict[str, Any]]:
        order = {sc.name: i for i, sc in enumerate(self.args.scenario_list)}

        def largest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
            return max(rows, key=lambda r: order.get(r["scenario"], -1)) if rows else None

        out: list[dict[str, Any]] = []

        def target(what: str, measured: str, goal: str, met: bool | None) -> None:
            out.append({"what": what, "measured": measured, "goal": goal, "met": met})

        kp = largest(self._rows("replay raw", client="kafka-python", workers=2))
        target(
            f"replay, kafka-python, 2 workers ({kp['scenario'] if kp else '-'})",
            f"{kp['per_s']:,.0f} events/s" if kp else "-",
            ">= 60,000 events/s",
            kp["per_s"] >= 60_000 if kp else None,
        )
        fast = self._rows("replay raw", client="confluent")
        best = max(fast, key=lambda r: (order.get(r["scenario"], -1), r["per_s"])) if fast else None
        kcat = largest(
            [r for r in self._rows("kcat -C -e to /dev/null (raw)") if best and r["scenario"] == best["scenario"]]
        )
        target(
            f"replay, confluent backend, best of {','.join(map(str, self.args.worker_list))} workers "
            f"({best['scenario'] if best else '-'}, {best['workers'] if best else '-'} workers)",
            f"{best['per_s']:,.0f} events/s" if best else "-",
            ">= 150,000 events/s",
            best["per_s"] >= 150_000 if best else None,
        )
        ratio = best["per_s"] / kcat["per_s"] if best and kcat else None
        target(
            "replay, confluent backend vs kcat on the same topic",
            f"{ratio:.2f} x ({kcat['per_s']:,.0f} events/s for kcat)" if ratio and kcat else "-",
            ">= 0.5 x",
            ratio >= 0.5 if ratio else None,
        )
        rc = largest(self._rows("recompute all three kinds"))
        target(
            f"recompute, all three kinds ({rc['scenario'] if rc else '-'})",
            f"{rc['per_s']:,.0f} events/s" if rc else "-",
            ">= 5,000,000 events/s",
            rc["per_s"] >= 5_000_000 if rc else None,
        )
        dq = [r for r in self._rows("deque loop (seed), all three kinds") if rc and r["scenario"] == rc["scenario"]]
        speedup = rc["per_s"] / dq[0]["per_s"] if rc and dq else None
        target(
            "recompute vs the per-event deque loop",
            f"{speedup:.1f} x ({dq[0]['per_s']:,.0f} events/s for the loop)" if speedup else "-",
            ">= 15 x",
            speedup >= 15 if speedup else None,
        )
        every = [r for r in self.rows if r["name"] == "recover (one shot, raw + outputs)"]
        top = max((order.get(r["scenario"], -1) for r in every), default=None)
        at_top = [r for r in every if order.get(r["scenario"], -1) == top]
        done = [r for r in at_top if r["status"] == "ok"]
        if done:  # the largest scenario, the fastest client
            best_rec = min(done, key=lambda r: r["seconds"])
            name = f"recover, {best_rec['scenario']} ({best_rec['client']}, {best_rec['items']:,} records)"
            target(name, f"{best_rec['seconds']:.1f} s", "< 120 s (10M events)", best_rec["seconds"] < 120)
            target(
                name.replace("recover,", "recover peak RSS,"),
                f"{best_rec['peak_rss_mb']:,.0f} MB",
                "< 1,536 MB",
                best_rec["peak_rss_mb"] < 1536,
            )
        elif at_top:
            failed = at_top[0]
            target(
                f"recover, {failed['scenario']} ({', '.join(r['client'] for r in at_top)})",
                f"{failed['status']}: {failed['notes']}",
                "< 120 s and < 1,536 MB (10M events)",
                False if failed["status"] == "failed" else None,
            )
        else:
            target("recover of the 10M-event incident", "-", "< 120 s, < 1.5 GB", None)
        self.plain_targets(target, largest)
        pubs = [r for r in self.rows if r["name"].startswith("publish") and r["status"] == "ok"]
        pub = max(pubs, key=lambda r: (r["items"], order.get(r["scenario"], -1), r["per_s"])) if pubs else None
        target(
            f"publish ({pub['items']:,} corrections, {pub.get('client') or 'kafka-python'}, end to end incl. "
            "verification)"
            if pub
            else "publish",
            f"{pub['per_s']:,.0f} corrections/s" if pub else "-",
            ">= 100,000 corrections/s",
            pub["per_s"] >= 100_000 if pub else None,
        )
        return out

    def plain_targets(self, target: Any, largest: Any) -> None:
        """The targets of the plain command (no performance flags) and of the per-record work."""
        rec = largest(self._rows("recovery recover, no flags"))
        where = f"({rec['scenario']}, {rec['items']:,} records)" if rec else ""
        target(f"`recovery recover`, no flags {where}", f"{rec['seconds']:.1f} s" if rec else "-", "< 30 s (10M)",
               rec["seconds"] < 30 if rec and rec["scenario"] == "10m" else None)  # fmt: skip
        target(f"`recovery recover` peak RSS of the process tree {where}", f"{rec['peak_rss_mb']:,.0f} MB" if rec
               else "-", "< 600 MB", rec["peak_rss_mb"] < 600 if rec else None)  # fmt: skip
        steps = [r for r in self.rows if r["name"].endswith(", no flags") and r["status"] == "ok"]
        worst = max(steps, key=lambda r: r["peak_rss_mb"]) if steps else None
        target("peak RSS of every range-reading CLI step, no flags (largest)", f"{worst['peak_rss_mb']:,.0f} MB "
               f"({worst['name']}, {worst['scenario']})" if worst else "-", "< 600 MB",
               worst["peak_rss_mb"] < 600 if worst else None)  # fmt: skip
        rc = largest([r for r in self._rows("recovery recompute, no flags") if r["scenario"] == "1m"])
        kcat = largest([r for r in self._rows(KCAT_BETWEEN) if r["scenario"] == "1m"]) or largest(
            [r for r in self._rows("kcat -C -e to /dev/null (raw)") if r["scenario"] == "1m"]
        )
        ratio = rc["seconds"] / kcat["seconds"] if rc and kcat else None
        target("`recovery recompute`, no flags, vs kcat's wall time on the same topic (1m)",
               f"{ratio:.1f} x ({rc['seconds']:.2f} s vs {kcat['seconds']:.2f} s)" if ratio and rc and kcat else "-",
               "<= 2.5 x", ratio <= 2.5 if ratio else None)  # fmt: skip
        for client in ("native", "confluent"):
            rd = largest(self._rows("reader only (no replay bookkeeping)", client=client))
            kc = largest([r for r in self._rows("kcat -C -e to /dev/null (raw)")
                          if rd and r["scenario"] == rd["scenario"]])  # fmt: skip
            share = rd["per_s"] / kc["per_s"] if rd and kc else None
            target(f"reader ({client}) vs kcat's rate on the same topic", f"{share:.2f} x" if share else "-",
                   ">= 0.8 x", share >= 0.8 if share else None)  # fmt: skip
        for name in ("validate (partition by partition)", "decode outputs (partition by partition)"):
            row = largest(self._rows(name))
            per_core = row["items"] / row["cpu_s"] if row and row.get("cpu_s") else None
            target(f"{name.split(' (')[0]}: records per CPU second", f"{per_core:,.0f}/s" if per_core else "-",
                   ">= 2,000,000/s per core", per_core >= 2_000_000 if per_core else None)  # fmt: skip


KCAT_BETWEEN = "kcat -C -e to /dev/null (raw, each run right after a recompute run)"


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["scenario"], row["name"], row.get("client", ""), str(row.get("workers", "")))


def merge(bench: Bench, earlier: dict[str, Any]) -> None:
    """Keep the rows, checks and profiles of an earlier run that this run did not measure again."""
    fresh = {_row_key(r): r for r in bench.rows}
    rows: list[dict[str, Any]] = []
    for r in earlier.get("rows", []):
        if r.get("client"):
            rows.append(fresh.pop(_row_key(r), r))
            continue
        # an earlier row without a client stands for all this run's rows of the same stage (every client)
        same = [k for k in fresh if k[:2] == (r["scenario"], r["name"])]
        if same:
            rows.extend(fresh.pop(k) for k in same)
        else:
            rows.append(r)
    bench.rows = rows + list(fresh.values())
    bench.checks = list(dict.fromkeys([*earlier.get("checks", []), *bench.checks]))
    bench.profiles = {**earlier.get("profiles", {}), **bench.profiles}
    bench.merged_from = f"{earlier.get('command', '?')} ({earlier.get('started', '?')})"


def start_broker(args: argparse.Namespace) -> tuple[str, Any]:
    """The cluster to use: KAFKA_BOOTSTRAP_SERVERS, or the benchmark's own broker (started here)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        return external, None
    from recovery.kafka.broker import LocalBroker

    broker = LocalBroker(Path(args.broker_home))
    print(f"starting the benchmark's broker in {args.broker_home} (heap {args.heap})", flush=True)
    return broker.start(heap=args.heap, timeout_s=120, tie_to_parent=not args.keep_broker), broker


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_start = report.now_iso(), report.load_average()
    machine = report.machine()
    print(f"machine: {machine['cpu']}, {machine['nproc']} cores, {machine['memory_gb']} GB", flush=True)
    bootstrap, broker = start_broker(args)
    bench = Bench(args, bootstrap)
    try:
        for sc in args.scenario_list:
            bench.scenario(sc)
        bench.memory_checks()
    finally:
        if broker is not None and not args.keep_broker:
            broker.stop()
            print("stopped the benchmark's broker", flush=True)
    if args.merge:
        merge(bench, json.loads(Path(args.merge).read_text()))
    bench.checks = [c for c in bench.checks if "recover gives" not in c]
    bench.digest_checks()
    results = {
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": started,
        "finished": report.now_iso(),
        "load_start": " / ".join(f"{x:.1f}" for x in load_start),
        "load_end": " / ".join(f"{x:.1f}" for x in report.load_average()),
        "conditions": args.conditions,
        "runs": args.runs,
        "machine": machine,
        "broker": "external cluster" if broker is None else f"started by the benchmark in {args.broker_home}",
        "broker_heap": "-" if broker is None else args.heap,
        "rows": bench.rows,
        "targets": bench.targets(),
        "checks": list(dict.fromkeys(bench.checks)),
        "profiles": bench.profiles,
        "merged_from": bench.merged_from,
    }
    print()
    print("\n".join(report.table(bench.rows)))
    print()
    print("\n".join(report.targets_table(results["targets"])))
    for check in results["checks"]:
        print(f"- {check}")
    if args.out:
        report.write_doc(Path(args.out), results)
        print(f"\nwritten to {args.out}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
