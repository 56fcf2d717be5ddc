"""Benchmark of `recover --engine spark` next to `--engine by-partition`, and its scaling by chunk count; prints tables.

    .venv/bin/python -m bench.bench_spark [--engines 10m] [--scaling 1m] [--chunks 1,2,4,8] [--master local[2]]

Uses KAFKA_BOOTSTRAP_SERVERS, or starts its own broker (``--broker-home``) and loads the scenarios of
:mod:`bench.scenario` (reused when already loaded). Every run is the `recovery recover` command in a fresh
process; wall time, CPU seconds and peak RSS are of its whole process tree (the JVM and Spark's Python
workers included; CPU is summed from /proc per process, sampled every 0.1 s). Both engines must write
the same fix set digest.

The scaling table recovers one scenario with chunk sizes that give each partition 1, 2, 4, 8 ... chunks.
Spark's event log gives every task's run time: ``W`` (task seconds, the sum over tasks) and the driver's
fixed cost ``F`` (the wall time during which no task ran: JVM start, planning, merging, the fix set).
The model for N executors (one task slot each) is ``T(N) = F + W / N``, i.e. per-task cost x tasks / N
plus the driver's fixed cost, while the brokers keep up and tasks are balanced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.measure import PAGE_BYTES, RESULT_PREFIX, ROOT, _children
from bench.scenario import Scenario, end_offsets, load, write_spec
from recovery.config import KafkaSettings
from recovery.spec import load_spec

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.1
COUNTS_DDL = "events long, bad long"


class TreeSampler(threading.Thread):
    """Peak RSS of a process tree and its CPU seconds (the last value seen of every process, summed)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.cpu_ticks = pid, 0, dict[int, int]()
        self._done = threading.Event()

    def _tree(self) -> list[int]:
        found, stack = [], [self.pid]
        while stack:
            pid = stack.pop()
            found.append(pid)
            stack.extend(_children(pid))
        return found

    def run(self) -> None:
        while not self._done.is_set():
            rss = 0
            for pid in self._tree():
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
                except (OSError, IndexError, ValueError):
                    continue
                self.cpu_ticks[pid] = max(self.cpu_ticks.get(pid, 0), int(stat[11]) + int(stat[12]))
            self.peak = max(self.peak, rss)
            self._done.wait(SAMPLE_S)

    def stop(self) -> None:
        self._done.set()
        self.join()

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu_ticks.values()) / TICKS_PER_S


def measure(params: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """One `recovery recover` in a fresh process (:func:`child`): its result, wall, tree CPU and peak RSS."""
    cmd = [sys.executable, "-m", "bench.bench_spark", "--child", json.dumps(params)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate(timeout=7200)
    sampler.stop()
    result: dict[str, Any] = {"returncode": proc.returncode}
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result.update(json.loads(line[len(RESULT_PREFIX) :]))
    if proc.returncode != 0:
        result["error"] = (stderr or stdout).strip().splitlines()[-3:]
        log = Path(params["out"]).with_suffix(".stderr")
        log.write_text(stderr)
        print(f"failed: {' '.join(result['error'])[-300:]} (its stderr: {log})", flush=True)
    result.update(process_s=time.monotonic() - started, cpu_s=sampler.cpu_s, peak_rss_mb=sampler.peak / 2**20)
    return result


def task_times(event_dir: Path) -> dict[str, Any]:
    """Every Spark task's (launch, finish) in ms from the event log: the task seconds and the busy span."""
    spans = []
    for path in event_dir.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        data = path.read_bytes()
        if path.suffix == ".zstd":
            import zstandard

            data = zstandard.ZstdDecompressor().stream_reader(data).read()
        for line in data.decode().splitlines():
            if '"SparkListenerTaskEnd"' in line:
                info = json.loads(line)["Task Info"]
                spans.append((info["Launch Time"], info["Finish Time"]))
    busy, end = 0, 0
    for lo, hi in sorted(spans):
        busy += max(0, hi - max(lo, end))
        end = max(end, hi)
    longest = max((hi - lo for lo, hi in spans), default=0) / 1000
    return {
        "tasks": len(spans),
        "task_s": sum(hi - lo for lo, hi in spans) / 1000,
        "busy_s": busy / 1000,
        "longest_s": longest,
    }


def child(params: dict[str, Any]) -> None:
    """Run `recovery recover` in this process; for Spark with its event log on, parsed after the session stops."""
    from recovery.cli import main
    from recovery.fixes.fixset import load_fixset

    out = Path(params["out"])
    shutil.rmtree(out, ignore_errors=True)
    argv = ["recover", "--spec", params["spec"], "--from", str(params["from_ms"]), "--to", str(params["to_ms"])]
    argv += ["--out", str(out), "--quiet", "--engine", params["engine"]]
    event_dir = out.parent / f"{out.name}-events"
    if params["engine"] == "spark":
        argv += ["--spark-master", params["master"], "--chunk-records", str(params["chunk_records"])]
        argv += ["--spark-driver-memory", params.get("driver_memory", "2g")]
        shutil.rmtree(event_dir, ignore_errors=True)
        event_dir.mkdir(parents=True)
        os.environ["PYSPARK_SUBMIT_ARGS"] = (
            f"--conf spark.eventLog.enabled=true --conf spark.eventLog.dir=file://{event_dir} pyspark-shell"
        )
    started = time.monotonic()
    code = main(argv)
    wall_s = time.monotonic() - started
    result: dict[str, Any] = {"wall_s": wall_s, "code": code}
    if code == 0:
        result["digest"] = load_fixset(out).digest
    if params["engine"] == "spark":
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()
        if session is not None:
            session.stop()
        result.update(task_times(event_dir))
        result["fixed_s"] = wall_s - result["busy_s"]
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    shutil.rmtree(out, ignore_errors=True)
    sys.exit(code)


def _counts_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("events", pa.int64()), ("bad", pa.int64())])


def _counted(events: int, bad: int) -> Any:
    import pyarrow as pa

    return pa.RecordBatch.from_pydict({"events": [events], "bad": [bad]}, schema=_counts_schema())


def readers_child(params: dict[str, Any]) -> None:
    """Read and validate the same offset chunks of one topic with Spark's Kafka source, then with the
    toolkit's reader inside ``mapInArrow``; one BENCH_RESULT line with each one's seconds and counts."""
    import polars as pl
    from pyspark.sql import SparkSession

    from recovery.frames import RECORDS
    from recovery.records.validate import validate
    from recovery.replay.pool import cached_reader
    from recovery.source import KafkaSource
    from recovery.spark.chunks import split_all

    spec = load_spec(params["spec"])
    topic, bootstrap, ends = params["topic"], params["bootstrap"], {int(p): n for p, n in params["ends"].items()}
    chunks = split_all("raw", [(p, 0, n) for p, n in sorted(ends.items())], params["chunk_records"])
    jars = sorted(str(j) for j in (ROOT / "spark" / "lib").glob("*.jar"))
    if not jars:
        raise SystemExit("spark/lib has no jars: run make setup (it fetches Spark's Kafka connector with Maven)")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the tasks' workers: this venv
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    started = time.monotonic()
    session = (
        SparkSession.builder.master(params["master"])
        .config("spark.jars", ",".join(jars))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "50000")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    result: dict[str, Any] = {"session_s": time.monotonic() - started, "chunks": len(chunks)}

    def validated(batches: Any) -> Any:
        for batch in batches:
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            events, bad = validate(frame.cast(dict(RECORDS)), spec)  # type: ignore[arg-type]
            yield _counted(events.height, bad.height)

    offsets = lambda side: json.dumps({topic: {str(p): n for p, n in side.items()}})  # noqa: E731
    for run in range(params["runs"]):
        mark = time.monotonic()
        frame = (
            session.read.format("kafka")
            .option("kafka.bootstrap.servers", bootstrap)
            .option("assign", json.dumps({topic: sorted(ends)}))
            .option("startingOffsets", offsets(dict.fromkeys(ends, 0)))
            .option("endingOffsets", offsets(ends))
            .option("kafka.isolation.level", "read_committed")
            .option("minPartitions", str(len(chunks)))
            .load()
            .selectExpr(
                "partition",
                "offset",
                "unix_millis(timestamp) AS timestamp_ms",
                "key",
                "value",
            )
        )
        row = frame.mapInArrow(validated, COUNTS_DDL).groupBy().sum().collect()[0]
        result[f"kafka_source_s_{run}"] = time.monotonic() - mark
        result["kafka_source"] = [int(row[0]), int(row[1])]

    source = KafkaSource(topic, KafkaSettings.from_env({"bootstrap_servers": bootstrap}))
    client = params["client"]

    def own(batches: Any) -> Any:
        for batch in batches:
            for i in batch.column(0).to_pylist():
                c = chunks[i]
                events_n = bad_n = 0
                for records in cached_reader(source, client).read(c.partition, c.start, c.end, 50_000):
                    events, bad = validate(records, spec)
                    events_n, bad_n = events_n + events.height, bad_n + bad.height
                yield _counted(events_n, bad_n)

    for run in range(params["runs"]):
        mark = time.monotonic()
        ids = session.range(0, len(chunks), 1, len(chunks))
        row = ids.mapInArrow(own, COUNTS_DDL).groupBy().sum().collect()[0]
        result[f"own_reader_s_{run}"] = time.monotonic() - mark
        result["own_reader"] = [int(row[0]), int(row[1])]
    session.stop()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def chunk_plan(raw: dict[int, int], outputs: dict[int, int], chunk_records: int) -> tuple[int, int]:
    """(read tasks, group tasks) of a whole-topic recovery in chunks of ``chunk_records`` offsets."""
    per = lambda n: -(-n // chunk_records)  # noqa: E731
    reads = sum(per(n) for n in raw.values() if n) + sum(per(n) for n in outputs.values() if n)
    return reads, sum(max(1, per(n)) for n in raw.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="10m", help="scenario of the engine comparison ('' = none)")
    parser.add_argument("--scaling", default="1m", help="scenario of the scaling table ('' = none)")
    parser.add_argument("--chunks", default="1,2,4,8", help="chunks per partition of the scaling table")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="2g", help="--spark-driver-memory of every Spark run")
    parser.add_argument("--engine-list", default="by-partition,spark", help="engines of the engine comparison")
    parser.add_argument("--chunk-records", type=int, default=1_000_000, help="chunk size of the engine comparison")
    parser.add_argument("--project", default="8,32,128", help="executor counts of the projection")
    parser.add_argument("--work", default="/tmp/bench-spark-work")
    parser.add_argument("--broker-home", default="/tmp/bench-spark-kafka")
    parser.add_argument("--heap", default="1g")
    parser.add_argument("--readers", default="1m", help="scenario of the reader comparison ('' = none)")
    parser.add_argument("--client", default="auto", help="the toolkit reader's client in the reader comparison")
    parser.add_argument("--runs", type=int, default=2, help="runs of each reader (the table shows the best)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--readers-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    if args.readers_child:
        readers_child(json.loads(args.readers_child))
        return 0
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        from recovery.kafka.broker import LocalBroker

        broker = LocalBroker(Path(args.broker_home))
        bootstrap = broker.start(heap=args.heap, timeout_s=120, tie_to_parent=True)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    settings = KafkaSettings.from_env({"bootstrap_servers": bootstrap})
    base = load_spec(ROOT / "pipeline.toml")
    work = Path(args.work)
    lines: list[str] = []

    def prepare(name: str) -> tuple[Scenario, dict[str, Any]]:
        sc = Scenario.parse(name)
        print(f"loading {sc.name}", flush=True)
        info = load(sc, settings, sc.spec(base))
        spec = str(write_spec(sc, work / sc.name / "spec.toml"))
        common = {"spec": spec, "from_ms": sc.from_ms, "to_ms": sc.to_ms, "master": args.master}
        common["driver_memory"] = args.driver_memory
        info["raw"], info["outputs"] = end_offsets(settings, sc.raw_topic), end_offsets(settings, sc.output_topic)
        return sc, {**common, "info": info}

    try:
        if args.readers:
            sc, common = prepare(args.readers)
            info = common.pop("info")
            chunk = -(-max(info["raw"].values()) // 2)
            params = {
                "spec": common["spec"],
                "topic": sc.raw_topic,
                "bootstrap": bootstrap,
                "ends": info["raw"],
                "chunk_records": chunk,
                "master": args.master,
                "client": args.client,
                "runs": args.runs,
            }
            print(f"{sc.name}: Spark's Kafka source vs the toolkit's reader in mapInArrow", flush=True)
            cmd = [sys.executable, "-m", "bench.bench_spark", "--readers-child", json.dumps(params)]
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
            found = [
                json.loads(x[len(RESULT_PREFIX) :]) for x in done.stdout.splitlines() if x.startswith(RESULT_PREFIX)
            ]
            if not found:
                raise SystemExit(f"the reader comparison failed: {done.stderr.strip().splitlines()[-5:]}")
            r = found[0]
            raw_n = sum(info["raw"].values())
            lines += [
                f"### {sc.name}: read + validate {raw_n:,} raw records in {r['chunks']} chunks on {args.master}, "
                f"best of {args.runs}",
                "",
                "| reader | seconds | records/s | valid events | quarantined |",
                "|---|---|---|---|---|",
            ]
            for name, label in (
                ("kafka_source", "Spark's Kafka source (spark-sql-kafka-0-10, read_committed)"),
                ("own_reader", f"the toolkit's reader in mapInArrow (client {args.client})"),
            ):
                best = min(r[f"{name}_s_{i}"] for i in range(args.runs))
                events, bad = r[name]
                lines.append(f"| {label} | {best:.1f} | {raw_n / best:,.0f} | {events:,} | {bad:,} |")
            lines += ["", f"(session start with the connector jars: {r['session_s']:.1f} s)", ""]
        if args.engines:
            sc, common = prepare(args.engines)
            info = common.pop("info")
            records = info["raw_records"] + info["output_records"]
            rows = []
            for engine in args.engine_list.split(","):
                params = {**common, "engine": engine, "chunk_records": args.chunk_records}
                print(f"{sc.name}: recover --engine {engine}", flush=True)
                rows.append((engine, measure({**params, "out": str(work / sc.name / engine)}, env)))
            lines += [
                f"### {sc.name}: {records:,} records (raw + outputs), `recover` on {args.master} vs one machine",
                "",
                "| engine | wall s | CPU s | peak RSS MB | records/s | tasks | fix set digest |",
                "|---|---|---|---|---|---|---|",
            ]
            for engine, r in rows:
                label = f"spark {args.master}, chunks of {args.chunk_records:,}" if engine == "spark" else engine
                wall = r["process_s"]
                lines.append(
                    f"| {label} | {wall:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:,.0f} | {records / wall:,.0f} | "
                    f"{r.get('tasks', '-')} | {str(r.get('digest', r.get('error')))[:16]} |"
                )
            same = len({r.get("digest") for _, r in rows}) == 1 and rows[0][1].get("digest")
            lines += ["", f"same fix set digest: {bool(same)}", ""]
        if args.scaling:
            sc, common = prepare(args.scaling)
            info = common.pop("info")
            largest = max(info["raw"].values())
            slots = int(args.master[6:-1]) if args.master.startswith("local[") and args.master[6:-1].isdigit() else 0
            executors = [int(n) for n in args.project.split(",")]
            head = " | ".join(f"T({n}) s" for n in executors)
            lines += [
                f"### {sc.name}: scaling by chunk count on {args.master}, model T(N) = F + W / N",
                "",
                f"| chunks per partition | chunk records | read tasks | group tasks | Spark tasks | wall s "
                f"| F driver s | W task s | per task s | T({slots or '?'}) model s | {head} | digest |",
                "|" + "---|" * (11 + len(executors)),
            ]
            digests = set()
            for k in [int(x) for x in args.chunks.split(",")]:
                chunk = -(-largest // k)
                reads, groups = chunk_plan(info["raw"], info["outputs"], chunk)
                params = {**common, "engine": "spark", "chunk_records": chunk, "out": str(work / sc.name / f"c{k}")}
                print(f"{sc.name}: spark, {k} chunks per partition ({chunk:,} records)", flush=True)
                r = measure(params, env)
                if r["returncode"] != 0:
                    lines.append(f"| {k} | {chunk:,} | failed: {r.get('error')} |")
                    continue
                digests.add(r["digest"])
                fixed, task_s = r["fixed_s"], r["task_s"]
                model = " | ".join(f"{fixed + task_s / n:.1f}" for n in executors)
                here = f"{fixed + task_s / slots:.1f}" if slots else "-"
                lines.append(
                    f"| {k} | {chunk:,} | {reads} | {groups} | {r['tasks']} | {r['wall_s']:.1f} | {fixed:.1f} | "
                    f"{task_s:.1f} | {task_s / max(1, r['tasks']):.2f} | {here} | {model} | {r['digest'][:16]} |"
                )
            lines += ["", f"one fix set digest over every chunk size: {len(digests) == 1}", ""]
    finally:
        if broker is not None:
            broker.stop()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
