"""The measured stages, each run in its own process: ``python -m bench.stages STAGE '{json params}'``.

A stage loads its input (Parquet files written by ``prepare``, or a topic), times only the step itself with
the package's public functions, and prints ``BENCH_RESULT {json}`` with ``seconds``, ``items`` and its
``getrusage`` memory peaks. A stage whose module or parameter is not in the package yet reports
``pending`` instead of failing the whole benchmark.
"""

from __future__ import annotations

import cProfile
import inspect
import io
import json
import pstats
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from bench.measure import RESULT_PREFIX, ROOT
from bench.scenario import Scenario
from recovery.config import KafkaSettings
from recovery.spec import PipelineSpec, load_spec

STAGES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}

RAW_RECORDS = "raw_records.parquet"
EVENTS = "events.parquet"
TRUTH = "truth.parquet"
OUTPUT_RECORDS = "output_records.parquet"
ORIGINALS = "originals.parquet"
COMPARISON = "comparison.parquet"


class Pending(Exception):
    """The package does not offer what this stage measures yet."""


def stage(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    STAGES[fn.__name__.replace("_", "-")] = fn
    return fn


def _scenario(p: dict[str, Any]) -> Scenario:
    return Scenario(p["scenario"], int(p["events"]))


def _spec(p: dict[str, Any], run: str = "") -> PipelineSpec:
    return _scenario(p).spec(load_spec(ROOT / "pipeline.toml"), run)


def _settings(p: dict[str, Any]) -> KafkaSettings:
    return KafkaSettings.from_env({"bootstrap_servers": p["bootstrap"]})


def _work(p: dict[str, Any]) -> Path:
    return Path(p["work"])


_CPU_S = [0.0]  # CPU seconds of the timed sections (this process and the workers it waited for)


def _cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time; its CPU time is added to what the stage reports."""
    cpu, started = _cpu_s(), time.perf_counter()
    value = fn()
    elapsed = time.perf_counter() - started
    _CPU_S[0] += _cpu_s() - cpu
    return value, elapsed


def _replay_options(client: str) -> dict[str, Any]:
    """``client=`` for replay() when it takes one; kafka-python is what it does without."""
    from recovery.replay.bounded import replay

    if "client" in inspect.signature(replay).parameters:
        return {"client": client}
    if client != "kafka-python":
        raise Pending("replay() has no client parameter yet")
    return {}


def _client_option(fn: Callable[..., Any], p: dict[str, Any]) -> dict[str, Any]:
    """``client=`` for ``fn`` when the stage names one (and ``fn`` takes it)."""
    client = p.get("client")
    if client is None:
        return {}
    if "client" not in inspect.signature(fn).parameters:
        if client == "kafka-python":
            return {}
        raise Pending(f"{fn.__name__}() has no client parameter yet")
    return {"client": client}


def read_topic(settings: KafkaSettings, topic: str) -> pl.DataFrame:
    """Every record of ``topic`` as a RECORDS frame, with the fastest reader available (inputs, not measured)."""
    from recovery.replay.plan import plan
    from recovery.source import KafkaSource

    source = KafkaSource(topic, settings)
    try:
        from recovery.kafka.confluent import ConfluentReader

        reader: Any = ConfluentReader(source)
    except ImportError:
        from recovery.replay.bounded import replay

        return replay(source, workers=2, quiet=True).frame()
    try:
        frames = [f for p in plan(source).partitions for f in reader.read(p.partition, p.start, p.end, 1_000_000)]
    finally:
        reader.close()
    return pl.concat(frames)


def _partitions(records: pl.DataFrame) -> Iterator[pl.DataFrame]:
    for p in records.get_column("partition").unique().sort():
        yield records.filter(pl.col("partition") == p)


# ------------------------------------------------------------------------------------------------ stages


@stage
def load(p: dict[str, Any]) -> dict[str, Any]:
    """Create and fill the scenario's topics (not a measurement: the parent reports it as set-up)."""
    from bench.scenario import load as load_

    started = time.perf_counter()
    info = load_(_scenario(p), _settings(p), _spec(p), log=lambda line: print(line, flush=True))
    return {"seconds": time.perf_counter() - started, "items": info["raw_records"] + info["output_records"], **info}


@stage
def same_records(p: dict[str, Any]) -> dict[str, Any]:
    """Whether the Parquet parts in ``dirs`` hold exactly the records of ``reference`` (dirs or files)."""
    from polars.testing import assert_frame_equal

    from recovery.source import FileSource

    combined = FileSource(p["dirs"]).scan().collect()
    reference = FileSource(p["reference"]).scan().collect()
    try:
        assert_frame_equal(combined, reference)
        same, detail = True, ""
    except AssertionError as exc:
        same, detail = False, str(exc)[:300]
    return {
        "seconds": 0.0,
        "items": combined.height,
        "same": same,
        "reference_rows": reference.height,
        "detail": detail,
    }


@stage
def prepare(p: dict[str, Any]) -> dict[str, Any]:
    """Write every stage's input as Parquet: raw records, events, truth, output records, originals, comparison."""
    from recovery.metrics.recompute import recompute
    from recovery.pipeline.compare import compare
    from recovery.pipeline.dedup import dedup
    from recovery.records.outputs import decode_outputs
    from recovery.records.validate import validate

    sc, spec, settings, work = _scenario(p), _spec(p), _settings(p), _work(p)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # partition by partition where the steps allow it, so that preparing 10M events fits in memory
    raw = read_topic(settings, sc.raw_topic)
    raw.write_parquet(work / RAW_RECORDS)
    checked = [validate(part, spec) for part in _partitions(raw)]
    del raw
    events = pl.concat([e for e, _ in checked])
    quarantine = pl.concat([q for _, q in checked])
    del checked
    quality = dedup(events, quarantine=quarantine, fields=spec.fields)
    del events
    quality.events.write_parquet(work / EVENTS)
    truth = recompute(quality.events, spec, from_ms=sc.from_ms, to_ms=sc.to_ms)
    truth.write_parquet(work / TRUTH)
    outputs = read_topic(settings, sc.output_topic)
    outputs.write_parquet(work / OUTPUT_RECORDS)
    originals = pl.concat([decode_outputs(part)[0] for part in _partitions(outputs)])
    del outputs
    originals.write_parquet(work / ORIGINALS)
    comparison = compare(originals, truth, spec, from_ms=sc.from_ms, to_ms=sc.to_ms)
    comparison.write_parquet(work / COMPARISON)
    counts = dict(comparison.group_by("status").len().iter_rows())
    return {
        "seconds": time.perf_counter() - started,
        "items": quality.events.height,
        "events": quality.events.height,
        "quarantined": quarantine.height,
        "truth": truth.height,
        "originals": originals.height,
        "statuses": counts,
        **quality.counts(),
    }


@stage
def replay(p: dict[str, Any]) -> dict[str, Any]:
    """replay() of a whole topic into memory (or Parquet parts with ``out_dir``)."""
    from recovery.replay.bounded import replay as replay_
    from recovery.source import KafkaSource

    options = _replay_options(p.get("client", "kafka-python"))
    source = KafkaSource(p["topic"], _settings(p))
    out_dir = p.get("out_dir")
    if out_dir:
        shutil.rmtree(out_dir, ignore_errors=True)
    result, seconds = _timed(
        lambda: replay_(source, workers=int(p.get("workers", 1)), out_dir=out_dir, quiet=True, **options)
    )
    if out_dir:
        shutil.rmtree(out_dir, ignore_errors=True)
    return {"seconds": seconds, "items": result.count}


@stage
def reader(p: dict[str, Any]) -> dict[str, Any]:
    """One backend reader over every partition in turn, in this process (the client's own speed)."""
    from recovery.replay.plan import plan
    from recovery.source import KafkaSource

    source = KafkaSource(p["topic"], _settings(p))
    snapshot = plan(source)
    try:
        from recovery.replay.readers import reader_for
    except ImportError as exc:
        raise Pending(f"no reader_for in the package: {exc}") from None
    r: Any = reader_for(source, p.get("client", "kafka-python"))

    def run() -> int:
        return sum(f.height for q in snapshot.partitions for f in r.read(q.partition, q.start, q.end, 200_000))

    try:
        count, seconds = _timed(run)
    finally:
        r.close()
    return {"seconds": seconds, "items": count}


def _profile_rows(profiler: cProfile.Profile, top: int, *, cumulative: bool) -> list[dict[str, Any]]:
    """The ``top`` functions by own time, or (``cumulative``) the package's functions by cumulative time."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    table = stats.stats  # type: ignore[attr-defined]
    total = max((row[3] for row in table.values()), default=0.0) if cumulative else sum(r[2] for r in table.values())
    rows = []
    for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in table.items():
        where = file.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        if cumulative and not where.startswith("recovery/"):
            continue
        rows.append(
            {
                "function": f"{where}:{line}({func})",
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "share": round((cumtime if cumulative else tottime) / total, 3) if total else 0.0,
                "cumtime_s": round(cumtime, 3),
            }
        )
    rows.sort(key=lambda r: -(r["cumtime_s"] if cumulative else r["tottime_s"]))
    return rows[:top]


@stage
def profile(p: dict[str, Any]) -> dict[str, Any]:
    """cProfile of one step in this process (``target``: replay, recompute, decode, publish): where time goes."""
    target = p["target"]
    call: Callable[[], Any]
    if target == "replay":
        from recovery.replay.bounded import replay as replay_
        from recovery.source import KafkaSource

        options = _replay_options(p.get("client", "kafka-python"))
        source = KafkaSource(p["topic"], _settings(p))
        call = lambda: replay_(source, workers=1, quiet=True, **options).count  # noqa: E731
    elif target == "recompute":
        from recovery.metrics.recompute import recompute as recompute_

        sc, spec, events = _scenario(p), _spec(p), pl.read_parquet(_work(p) / EVENTS)
        call = lambda: (recompute_(events, spec, from_ms=sc.from_ms, to_ms=sc.to_ms), events.height)[1]  # noqa: E731
    elif target == "decode":
        from recovery.records.outputs import decode_outputs as decode

        records = pl.read_parquet(_work(p) / OUTPUT_RECORDS)
        call = lambda: (decode(records), records.height)[1]  # noqa: E731
    elif target == "publish":
        from recovery.fixes.publish import publish as publish_

        directory, settings = _approved_fixset(p, int(p["corrections"])), _settings(p)
        options = _client_option(publish_, p)
        call = lambda: publish_(directory, settings, **options).corrections  # noqa: E731
    else:
        raise ValueError(f"unknown profile target {target!r}")
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    items = call()
    profiler.disable()
    seconds = time.perf_counter() - started
    top = int(p.get("top", 12))
    return {
        "seconds": seconds,
        "items": items,
        "own": _profile_rows(profiler, top, cumulative=False),
        "cumulative": _profile_rows(profiler, top, cumulative=True),
    }


@stage
def validate_dedup(p: dict[str, Any]) -> dict[str, Any]:
    """validate() then dedup() on the raw records (``by_partition``: validate one partition at a time)."""
    from recovery.pipeline.dedup import dedup
    from recovery.records.validate import validate

    spec = _spec(p)
    records = pl.read_parquet(_work(p) / RAW_RECORDS)

    def check() -> tuple[pl.DataFrame, pl.DataFrame]:
        if not p.get("by_partition"):
            return validate(records, spec)
        parts = [validate(part, spec) for part in _partitions(records)]
        return pl.concat([e for e, _ in parts]), pl.concat([q for _, q in parts])

    (events, quarantine), validate_s = _timed(check)
    quality, dedup_s = _timed(lambda: dedup(events, quarantine=quarantine, fields=spec.fields))
    return {
        "seconds": validate_s + dedup_s,
        "items": records.height,
        "validate_s": round(validate_s, 3),
        "dedup_s": round(dedup_s, 3),
        "events": quality.events.height,
    }


def _only(spec: PipelineSpec, kinds: list[str]) -> PipelineSpec:
    from dataclasses import replace

    return replace(spec, metrics=tuple(m for m in spec.metrics if m.kind in kinds))


@stage
def recompute(p: dict[str, Any]) -> dict[str, Any]:
    """recompute() of the given metric kinds over the deduplicated events."""
    from recovery.metrics.recompute import recompute as recompute_

    sc = _scenario(p)
    spec = _only(_spec(p), p["kinds"])
    events = pl.read_parquet(_work(p) / EVENTS)
    # steady state, as in a recovery (one call per key group in a long-lived worker): the median of three
    # calls in one process; the first call (allocator and thread pool warming up) is reported beside it
    calls = [
        _timed(lambda: recompute_(events, spec, from_ms=sc.from_ms, to_ms=sc.to_ms, presorted=True)) for _ in range(3)
    ]
    seconds = sorted(s for _, s in calls)[1]
    return {"seconds": seconds, "items": events.height, "results": calls[0][0].height, "first_call_s": calls[0][1]}


@stage
def deque_loop(p: dict[str, Any]) -> dict[str, Any]:
    """The seed's per-event loop on the same events (rows materialised before timing: generous to it)."""
    from bench.baselines import check_same_results, deque_recompute, event_rows
    from recovery.metrics.recompute import recompute as recompute_

    spec = _only(_spec(p), p["kinds"])
    events = pl.read_parquet(_work(p) / EVENTS)
    rows = event_rows(events)
    out, seconds = _timed(lambda: deque_recompute(rows, spec))
    check = check_same_results(out, recompute_(events, spec)) if p.get("check", True) else {}
    return {"seconds": seconds, "items": len(rows), "results": len(out), "check": check}


@stage
def validate_only(p: dict[str, Any]) -> dict[str, Any]:
    """validate() of the raw records partition by partition, as the per-partition engine does (no dedup)."""
    from recovery.records.validate import validate

    spec = _spec(p)
    records = pl.read_parquet(_work(p) / RAW_RECORDS)
    parts = list(_partitions(records))
    checked, seconds = _timed(lambda: [validate(part, spec) for part in parts])
    return {"seconds": seconds, "items": records.height, "quarantined": sum(q.height for _, q in checked)}


@stage
def decode_outputs(p: dict[str, Any]) -> dict[str, Any]:
    """decode_outputs() of the output topic's records (``by_partition``: one partition at a time)."""
    from recovery.records.outputs import decode_outputs as decode

    records = pl.read_parquet(_work(p) / OUTPUT_RECORDS)

    def run() -> tuple[pl.DataFrame, pl.DataFrame]:
        if not p.get("by_partition"):
            return decode(records)
        parts = [decode(part) for part in _partitions(records)]
        return pl.concat([o for o, _ in parts]), pl.concat([b for _, b in parts])

    (originals, bad), seconds = _timed(run)
    return {"seconds": seconds, "items": records.height, "quarantined": bad.height}


@stage
def compare(p: dict[str, Any]) -> dict[str, Any]:
    """compare() of the originals with truth, plus the summary."""
    from recovery.pipeline.compare import compare as compare_
    from recovery.pipeline.compare import summarize

    sc, spec = _scenario(p), _spec(p)
    originals = pl.read_parquet(_work(p) / ORIGINALS)
    truth = pl.read_parquet(_work(p) / TRUTH)

    def run() -> pl.DataFrame:
        comparison = compare_(originals, truth, spec, from_ms=sc.from_ms, to_ms=sc.to_ms)
        summarize(comparison)
        return comparison

    comparison, seconds = _timed(run)
    return {"seconds": seconds, "items": originals.height + truth.height, "rows": comparison.height}


@stage
def fix_set(p: dict[str, Any]) -> dict[str, Any]:
    """build_fixset() + write_fixset() (with the review frames) from the comparison."""
    from recovery.fixes.fixset import build_fixset, write_fixset

    sc, spec = _scenario(p), _spec(p)
    comparison = pl.read_parquet(_work(p) / COMPARISON)
    out = Path(tempfile.mkdtemp(prefix="fixset-", dir=_work(p)))
    shutil.rmtree(out)

    def run() -> Any:
        fixset = build_fixset(
            comparison,
            spec=spec,
            incident=f"bench-{sc.name}",
            from_ms=sc.from_ms,
            to_ms=sc.to_ms,
            parameters={},
            sources={},
        )
        write_fixset(fixset, out, review={"comparison": comparison})
        return fixset

    fixset, seconds = _timed(run)
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "items": comparison.height, "corrections": fixset.corrections.height}


def _approved_fixset(p: dict[str, Any], n: int) -> Path:
    """A written and approved fix set of ``n`` upserts, with its own corrections topic (a fresh digest)."""
    from recovery.fixes.approval import approve
    from recovery.fixes.fixset import build_fixset, write_fixset

    sc, settings = _scenario(p), _settings(p)
    run_id = f"{n}-{time.time_ns() % 10**12}"
    spec = _spec(p, run=run_id)
    comparison = pl.read_parquet(_work(p) / COMPARISON).filter(pl.col("corrected").is_not_null()).head(n)
    if comparison.height < n:
        raise Pending(f"the scenario has only {comparison.height} results, {n} asked")
    comparison = comparison.with_columns(pl.lit("missing").alias("status"), pl.lit(0, dtype=pl.Int64).alias("copies"))
    directory = _work(p) / f"publish-{run_id}"
    fixset = build_fixset(
        comparison,
        spec=spec,
        incident=f"bench-{run_id}",
        from_ms=sc.from_ms,
        to_ms=sc.to_ms,
        parameters={},
        sources={},
    )
    write_fixset(fixset, directory)
    approve(directory, "bench", settings)
    return directory


@stage
def publish(p: dict[str, Any]) -> dict[str, Any]:
    """publish() of an approved fix set of ``corrections`` upserts (fresh corrections topic and digest)."""
    from recovery.fixes.publish import publish as publish_

    settings = _settings(p)
    directory = _approved_fixset(p, int(p["corrections"]))
    options = _client_option(publish_, p)
    report, seconds = _timed(lambda: publish_(directory, settings, **options))
    shutil.rmtree(directory, ignore_errors=True)
    if not report.verified or report.status != "published":
        raise RuntimeError(f"publish ended {report.status}, verified={report.verified}")
    return {
        "seconds": seconds,
        "items": report.corrections,
        "send_s": round(report.send_s, 3),
        "send_per_s": round(report.corrections_per_s),
        "verified": report.verified,
    }


@stage
def recover(p: dict[str, Any]) -> dict[str, Any]:
    """The one-shot recover() of the whole incident range (raw + outputs) to a fix set."""
    from recovery.pipeline.recover import recover as recover_

    sc, spec, settings = _scenario(p), _spec(p), _settings(p)
    client = p.get("client", "kafka-python")
    options: dict[str, Any] = {}
    if client != "kafka-python":
        if "client" not in inspect.signature(recover_).parameters:
            raise Pending("recover() has no client parameter yet")
        options["client"] = client
    if p.get("engine"):
        options["engine"] = p["engine"]
    out = _work(p) / f"recover-{time.time_ns() % 10**12}"
    report, seconds = _timed(
        lambda: recover_(
            spec,
            sc.from_ms,
            sc.to_ms,
            out_dir=out,
            settings=settings,
            workers=int(p.get("workers", 2)),
            quiet=True,
            **options,
        )
    )
    digest = report.fixset.digest
    shutil.rmtree(out, ignore_errors=True)
    items = report.truth.replay.count + report.outputs_replay.count
    return {
        "seconds": seconds,
        "items": items,
        "raw_records": report.truth.replay.count,
        "output_records": report.outputs_replay.count,
        "timings_s": {k: round(v, 2) for k, v in report.timings_s.items()},
        "corrections": report.fixset.corrections.height,
        "engine": report.engine,
        "digest": digest,
    }


def _vm_hwm_kb() -> int:
    """This process's peak resident set size (kB) since it started."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str]) -> int:
    name, params = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    fn = STAGES[name]
    try:
        result = fn(params)
        result["status"] = "ok"
    except Pending as exc:
        result = {"status": "pending", "reason": str(exc)}
    except ImportError as exc:
        result = {"status": "pending", "reason": f"not in the package yet: {exc}"}
    # VmHWM, not getrusage(RUSAGE_SELF): after fork + exec Linux keeps the forking parent's high-water mark there
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest worker this stage waited for
    result["maxrss_kb"] = max(_vm_hwm_kb(), children)
    if _CPU_S[0]:
        result["cpu_s"] = round(_CPU_S[0], 3)
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
