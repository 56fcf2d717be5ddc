"""Simulated incidents on a real broker, with known ground truth: ``recovery simulate``.

:func:`simulate` generates seeded ticks with every fault of the design (:mod:`recovery.sim.ticks`), produces
them to the raw topic, runs the live worker over them as subprocesses (a crash is a real SIGKILL, followed
by a restart from the committed offsets) and writes an incident file saying what was injected where and
what the output topic must show for it.

The prediction is exact: the live worker is deterministic in bounded mode, and
:func:`recovery.live.worker.emulate_live` replays it in memory with the same hooks. Comparing that emulation with
truth gives the expected discrepancy of every (key, metric, window) in the recommended recovery range, overall
and for each fault on its own. Truth and the comparison come from the simulator's own per-event reference
(:mod:`recovery.sim.oracle`), never from the recompute and compare that recovery runs: the incident file is
the ground truth those are tested against.
Everything in the incident except its ``run`` section (wall-clock figures, consumer group, output offsets)
is a function of the parameters and the topics' start offsets: the same seed gives the same file.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from recovery.config import KafkaSettings
from recovery.errors import ConfigError, DataError
from recovery.frames import RECORDS
from recovery.kafka.clients import consumer, guarded, producer
from recovery.kafka.topics import delete_topics, ensure_topic, list_topics, offsets, partitions_for
from recovery.live.hooks import BugHook, CrashHook
from recovery.live.state import LiveStats, emulate_live
from recovery.sim.oracle import ABS_TOL, REL_TOL, Prediction, predict_discrepancies
from recovery.sim.ticks import (
    STREAM_FAULTS,
    Fault,
    SimulationParams,
    StreamFaults,
    bug_hook,
    build_records,
    choose_stream_faults,
    describe_events,
    first_by_offset,
    generate_ticks,
    malformed_reason,
    parsed_records,
    plan_faults,
    resolve_crash,
)
from recovery.spec import PipelineSpec

INCIDENT_FORMAT = "recovery-incident/1"
TOPIC_CONFIG = {"retention.ms": "-1"}  # simulated event times are in the past: keep them
ProgressFn = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------------------------------------
# Predictions (no Kafka)


def recovery_range(events: pl.DataFrame, spec: PipelineSpec) -> tuple[int, int]:
    """[from_ms, to_ms) covering every result, without windows still open at the end of the stream.

    Bounds are aligned to the least common multiple of the hops (one minute for the example spec).
    """
    windowed = [m for m in spec.metrics if m.is_windowed]
    align = math.lcm(*(m.hop_ms or 1 for m in windowed)) if windowed else 1000
    longest = max((m.window_ms or 0 for m in windowed), default=0)
    grace = max((m.grace_ms for m in windowed), default=0)
    first = int(events.get_column("ts").min())  # type: ignore[arg-type]
    last_closed = int(events.group_by("partition").agg(pl.col("ts").max()).get_column("ts").min()) - grace  # type: ignore[arg-type]
    from_ms = (first - longest) // align * align
    to_ms = last_closed // align * align
    if to_ms <= from_ms:
        raise ConfigError("the simulated stream is too short to close a window", hint="use more --events")
    return from_ms, to_ms


def predict(
    records: pl.DataFrame,
    ticks: pl.DataFrame,
    spec: PipelineSpec,
    *,
    crashes: Sequence[CrashHook],
    bugs: Sequence[BugHook],
    from_ms: int,
    to_ms: int,
) -> tuple[pl.DataFrame, LiveStats, Prediction]:
    """(emulated LIVE_RESULTS in publish order, worker counters, the reference's classes) for a built stream
    and its hooks."""
    parsed = parsed_records(records, ticks, spec)
    published, stats = emulate_live(records.select(RECORDS.names()), spec, crashes=crashes, bugs=bugs, parsed=parsed)
    return published, stats, predict_discrepancies(parsed[0], published, spec, from_ms, to_ms)


def discrepancy_frame(rows: Sequence[Sequence[Any]]) -> pl.DataFrame:
    """The incident's ``results`` lists as a frame (key, metric, window, status, copies, conflicting)."""
    schema = {
        "key": pl.String,
        "metric": pl.String,
        "window": pl.Int64,
        "status": pl.String,
        "copies": pl.Int64,
        "conflicting": pl.Boolean,
    }
    return pl.DataFrame([list(r) for r in rows], schema=schema, orient="row")


# ----------------------------------------------------------------------------------------------------------
# Kafka: produce, position the group, run the workers


def _send_all(settings: KafkaSettings, topic: str, records: pl.DataFrame) -> None:
    """Send records in arrival order (explicit partition, timestamp = arrival) and wait for the acks."""
    with producer(
        settings, linger_ms=20, batch_size=512 * 1024, compression_type="gzip", client_id="recovery-simulate"
    ) as p:
        send = p.send
        ordered = records.sort("timestamp_ms", "partition", "offset")
        for partition, ts, key, value in ordered.select("partition", "timestamp_ms", "key", "value").iter_rows():
            send(topic, key=key, value=value, partition=partition, timestamp_ms=ts)
        guarded(settings, f"producing to {topic}", p.flush)


def _send_file(settings: KafkaSettings, topic: str, path: str) -> None:
    """Child process of :func:`_produce`: send the records stored at ``path``."""
    _send_all(settings, topic, pl.read_ipc(path))


def _produce(settings: KafkaSettings, topic: str, records: pl.DataFrame, producers: int) -> float:
    """Send every record, from ``producers`` processes (each owning whole partitions, so order holds).

    kafka-python spends most of a send in Python: one process tops out near 15k records/s here, two
    processes on disjoint partitions nearly double that. Returns the seconds it took.
    """
    started = time.monotonic()
    sizes = records.group_by("partition").len().sort("len", "partition", descending=[True, False]).rows()
    producers = max(1, min(producers, len(sizes)))
    if producers == 1 or records.height < 20_000:
        _send_all(settings, topic, records)
        return time.monotonic() - started
    groups: list[list[int]] = [[] for _ in range(producers)]
    loads = [0] * producers
    for partition, size in sizes:  # largest partitions first, each to the least loaded producer
        k = loads.index(min(loads))
        groups[k].append(partition)
        loads[k] += size
    context = multiprocessing.get_context("spawn")  # no fork: polars' thread pool does not survive it
    with tempfile.TemporaryDirectory(prefix="recovery-sim-") as tmp:
        children = []
        for k, group in enumerate(groups):
            path = str(Path(tmp) / f"records-{k}.arrow")
            records.filter(pl.col("partition").is_in(group)).select(RECORDS.names()).write_ipc(path)
            child = context.Process(target=_send_file, args=(settings, topic, path), name=f"simulate-producer-{k}")
            child.start()
            children.append(child)
        for child in children:
            child.join()
        failed = [c.name for c in children if c.exitcode != 0]
    if failed:
        raise DataError(f"producer process(es) {', '.join(failed)} failed", hint="see their traceback above; rerun")
    return time.monotonic() - started


def reset_topics(settings: KafkaSettings, spec: PipelineSpec, timeout_s: float = 60.0) -> list[str]:
    """Delete the spec's raw, output, corrections and audit topics (for repeatable demos); returns the deleted.

    Waits until the cluster no longer lists them, so they can be created again right away.
    """
    names = [spec.topics.raw, spec.topics.output, spec.topics.corrections, spec.topics.audit]
    existing = [n for n in names if n in list_topics(settings)]
    if existing:
        delete_topics(settings, existing)
        deadline = time.monotonic() + timeout_s
        while set(existing) & set(list_topics(settings)):
            if time.monotonic() > deadline:
                raise DataError(f"topics {existing} were not deleted within {timeout_s:.0f} s")
            time.sleep(0.2)  # the deletion is asynchronous: poll its completion
    return existing


def _start_group_at(settings: KafkaSettings, group: str, topic: str, start_offsets: dict[int, int]) -> None:
    """Commit the simulation's first offsets for ``group`` so the worker skips older records of the topic."""
    parts = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in start_offsets.items()}
    with consumer(settings, group_id=group) as c:
        c.assign(list(parts))
        guarded(settings, f"positioning group {group}", lambda: c.commit(parts))


def _spec_toml(spec: PipelineSpec) -> str:
    """The spec as TOML (for worker subprocesses when it did not come from a file)."""
    data = spec.to_dict()
    lines = ["[topics]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in data["topics"].items()]
    lines.append("\n[fields]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in data["fields"].items()]
    for metric in data["metrics"]:
        lines.append("\n[[metrics]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in metric.items()]
    return "\n".join(lines) + "\n"


def _run_worker(spec_path: str, group: str, args: list[str], timeout_s: float, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "recovery", "live", "--spec", spec_path, "--group", group, "--until-end"]
    command += ["--instance-id", "simulated-worker", "--json", "--log-level", "WARNING", *args]
    started = time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise DataError(
            f"live worker {' '.join(args) or '(no hooks)'} did not finish in {timeout_s:.0f} s",
            hint="is the broker overloaded? see `recovery kafka status`",
        ) from None
    run: dict[str, Any] = {"args": args, "exit_code": proc.returncode, "seconds": round(time.monotonic() - started, 3)}
    lines = proc.stdout.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        run["stats"] = json.loads(lines[-1])
    run["stderr_tail"] = proc.stderr.strip().splitlines()[-5:]
    return run


def _run_workers(
    settings: KafkaSettings,
    spec: PipelineSpec,
    spec_path: str | None,
    group: str,
    crashes: Sequence[CrashHook],
    bugs: Sequence[BugHook],
    records: int,
    progress: ProgressFn,
) -> list[dict[str, Any]]:
    """Run the bounded worker once per crash (each killed by its hook) and once more to the end."""
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers)
    timeout_s = 120.0 + records / 1000.0
    bug_args = [a for b in bugs for a in ("--bug", str(b))]
    with tempfile.TemporaryDirectory(prefix="recovery-sim-") as tmp:
        if spec_path is None:
            spec_path = str(Path(tmp) / "pipeline.toml")
            Path(spec_path).write_text(_spec_toml(spec))
        runs = []
        for crash in sorted(crashes, key=lambda c: (c.partition, c.offset)):
            progress(f"live worker with crash hook {crash} ...")
            run = _run_worker(spec_path, group, ["--crash", str(crash), *bug_args], timeout_s, env)
            if run["exit_code"] != -signal.SIGKILL:
                raise DataError(
                    f"the live worker with crash hook {crash} exited with {run['exit_code']} instead of SIGKILL",
                    hint="; ".join(run["stderr_tail"]) or "see the worker's log",
                )
            runs.append(run)
        progress("live worker to the end of the raw topic ...")
        run = _run_worker(spec_path, group, bug_args, timeout_s, env)
        if run["exit_code"] != 0:
            raise DataError(
                f"the live worker exited with {run['exit_code']}",
                hint="; ".join(run["stderr_tail"]) or "see the worker's log",
            )
        runs.append(run)
    return runs


# ----------------------------------------------------------------------------------------------------------
# The incident


def _fault_entry(
    fault: Fault,
    records: pl.DataFrame,
    ticks: pl.DataFrame,
    spec: PipelineSpec,
    chosen: StreamFaults | None,
    crash: CrashHook | None,
    bug: BugHook | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": fault.id,
        "type": fault.type,
        "variant": fault.variant,
        "range": {"from_ms": fault.from_ms, "to_ms": fault.to_ms},
    }
    if chosen is not None:
        entry["share"] = fault.share
        idx = sorted(chosen.dropped | set(chosen.duplicated) | set(chosen.delayed) | set(chosen.malformed))
        events = describe_events(records, ticks, idx)
        if chosen.malformed:
            values = dict(records.filter(pl.col("kind").is_not_null()).select("idx", "value").rows())
            by_id = dict(ticks.filter(pl.col("idx").is_in(idx)).select("event_id", "idx").rows())
            for e in events:
                i = by_id[e["event_id"]]
                e["kind"] = chosen.malformed[i]
                e["reason"] = malformed_reason(values[i], spec)
        entry["events"] = events
        entry["keys"] = sorted({e["key"] for e in events})
        entry["count"] = len(events)
    if crash is not None:
        span = records.filter(
            (pl.col("partition") == crash.partition)
            & pl.col("offset").is_between(crash.offset, crash.offset + crash.span - 1)
        )
        entry["hook"] = {"partition": crash.partition, "offset": crash.offset, "span": crash.span, "arg": str(crash)}
        entry["keys"] = sorted(span.get_column("symbol").unique().to_list())
        entry["count"] = span.height
    if bug is not None:
        hit = ticks.filter(pl.col("ts").is_between(bug.from_ms, bug.to_ms, closed="left"))
        entry["hook"] = {"kind": bug.kind, "from_ms": bug.from_ms, "to_ms": bug.to_ms, "arg": str(bug)}
        entry["keys"] = sorted(hit.get_column("key").unique().to_list())
        entry["count"] = hit.height
    return entry


def simulate(
    settings: KafkaSettings,
    spec: PipelineSpec,
    params: SimulationParams,
    *,
    out: str | Path | None = None,
    live: bool = True,
    producers: int = 2,
    progress: ProgressFn = _quiet,
) -> dict[str, Any]:
    """Produce a simulated incident to the spec's raw topic, run the live worker over it, return the incident.

    With ``live=False`` only the raw events are produced (no worker runs, no predictions): for loading
    benchmarks. ``producers`` processes send the records (each owning whole partitions). The incident is
    also written to ``out`` (JSON) when given.
    """
    clock = time.monotonic()
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    timings: dict[str, float] = {}
    ticks = generate_ticks(params)
    first_ms, last_ms = int(ticks.get_column("ts").min()), int(ticks.get_column("ts").max())  # type: ignore[arg-type]
    faults = plan_faults(params, first_ms, last_ms, spec)
    chosen = {f.id: choose_stream_faults(ticks, f, spec, params.seed) for f in faults if f.type in STREAM_FAULTS}
    all_stream = StreamFaults()
    for part in chosen.values():
        all_stream = all_stream.merged(part)
    timings["generate_s"] = time.monotonic() - clock

    raw, output = spec.topics.raw, spec.topics.output
    for topic in (raw, output):
        ensure_topic(settings, topic, spec.topics.partitions, TOPIC_CONFIG)
    partitions = len(partitions_for(settings, raw))
    start_offsets = offsets(settings, raw).end_offsets
    records = build_records(ticks, all_stream, spec, partitions, start_offsets)
    latest = int(records.get_column("timestamp_ms").max())  # type: ignore[arg-type]
    if latest > int(time.time() * 1000):
        raise ConfigError(
            f"simulated record times reach {datetime.fromtimestamp(latest / 1000, UTC):%Y-%m-%dT%H:%M}Z, in the future",
            hint="use an earlier --start, a higher --rate or fewer --events",
        )
    progress(f"producing {records.height} records to {raw} ({partitions} partitions) ...")
    timings["produce_s"] = _produce(settings, raw, records, producers)
    end_offsets = offsets(settings, raw).end_offsets
    expected = records.group_by("partition").agg(pl.col("offset").max() + 1)
    for partition, end in expected.rows():
        if end_offsets.get(partition) != end:
            raise DataError(
                f"{raw}[{partition}] ends at {end_offsets.get(partition)}, expected {end}",
                hint="another producer wrote to the raw topic during the simulation; use a fresh topic",
            )
    progress(f"produced {records.height} records in {timings['produce_s']:.1f} s")

    crash_faults = [f for f in faults if f.type == "crash"]
    bug_faults = [f for f in faults if f.type == "bad-deploy"]
    crashes = {f.id: resolve_crash(records, f, params.seed) for f in crash_faults}
    bugs = {f.id: bug_hook(f) for f in bug_faults}
    counts = {
        "generated": ticks.height,
        "records": records.height,
        "dropped": len(all_stream.dropped),
        "duplicated": len(all_stream.duplicated),
        "delayed": len(all_stream.delayed),
        "malformed": len(all_stream.malformed),
        "records_by_partition": {
            str(p): int(n) for p, n in records.group_by("partition").len().sort("partition").rows()
        },
    }
    incident: dict[str, Any] = {
        "format": INCIDENT_FORMAT,
        "incident": f"sim-{params.seed}-{params.events}x{params.symbols}",
        "seed": params.seed,
        "params": params.to_dict(),
        "spec": spec.to_dict(),
        "spec_digest": spec.digest(),
        "topics": {"raw": raw, "output": output, "partitions": partitions},
        "symbols": sorted(ticks.get_column("key").unique().to_list()),
        "partition_of_key": dict(sorted(records.select("symbol", "partition").unique().rows())),
        "time_range": {"from_ms": first_ms, "to_ms": last_ms + 1},
        "raw_offsets": {
            "start": {str(p): o for p, o in sorted(start_offsets.items())},
            "end": {str(p): o for p, o in sorted(end_offsets.items())},
        },
        "counts": counts,
    }
    entries = [
        _fault_entry(f, records, ticks, spec, chosen.get(f.id), crashes.get(f.id), bugs.get(f.id)) for f in faults
    ]
    run: dict[str, Any] = {"created_at": created_at}
    if live:
        clock = time.monotonic()
        hooks = [c for c in crashes.values() if c is not None]
        events_all, _ = parsed_records(records, ticks, spec)
        from_ms, to_ms = recovery_range(first_by_offset(events_all), spec)
        incident["recovery_range"] = {"from_ms": from_ms, "to_ms": to_ms}
        progress("predicting the live worker's outputs ...")
        published, stats, overall = predict(
            records, ticks, spec, crashes=hooks, bugs=list(bugs.values()), from_ms=from_ms, to_ms=to_ms
        )
        base = build_records(ticks, StreamFaults(), spec, partitions, start_offsets)
        for fault, entry in zip(faults, entries, strict=True):
            stream = (
                build_records(ticks, chosen[fault.id], spec, partitions, start_offsets) if fault.id in chosen else base
            )
            crash = resolve_crash(stream, fault, params.seed) if fault.type == "crash" else None
            _, _, alone = predict(
                stream,
                ticks,
                spec,
                crashes=[crash] if crash else [],
                bugs=[bugs[fault.id]] if fault.id in bugs else [],
                from_ms=from_ms,
                to_ms=to_ms,
            )
            entry["predicted"] = {"counts": alone.counts, "results": alone.results}
        live_stats = stats.to_dict()
        for name in ("worker", "commits", "seconds", "events_per_s", "partitions"):
            live_stats.pop(name, None)
        incident["predicted"] = {
            "tolerance": {"abs": ABS_TOL, "rel": REL_TOL},
            "outputs": published.height,
            "live": live_stats,
            "counts": overall.counts,
            "results": overall.results,
        }
        timings["predict_s"] = time.monotonic() - clock
        group = f"recovery-sim-{uuid.uuid4().hex[:12]}"
        output_start = offsets(settings, output).end_offsets
        _start_group_at(settings, group, raw, start_offsets)
        clock = time.monotonic()
        runs = _run_workers(settings, spec, spec.source, group, hooks, list(bugs.values()), records.height, progress)
        timings["live_s"] = time.monotonic() - clock
        output_end = offsets(settings, output).end_offsets
        run.update(
            {
                "group": group,
                "workers": runs,
                "output_offsets": {
                    "start": {str(p): o for p, o in sorted(output_start.items())},
                    "end": {str(p): o for p, o in sorted(output_end.items())},
                },
            }
        )
    incident["faults"] = entries
    run["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    run["produce_events_per_s"] = round(records.height / timings["produce_s"], 1) if timings["produce_s"] else None
    incident["run"] = run
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(incident, indent=1, sort_keys=False) + "\n")
    return incident


def read_incident(path: str | Path) -> dict[str, Any]:
    """An incident file written by :func:`simulate`."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"incident file {str(p)!r} not found", path=str(p), hint="run `recovery simulate ... --out FILE`"
        )
    try:
        incident = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"incident file is not JSON: {exc}", path=str(p)) from None
    if not isinstance(incident, dict) or incident.get("format") != INCIDENT_FORMAT:
        raise DataError(f"not a {INCIDENT_FORMAT} file", path=str(p))
    return incident
