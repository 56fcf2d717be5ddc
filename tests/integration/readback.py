"""Helpers of the live and simulator tests: read topics back (bounded), specs with unique topics, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
from kafka import TopicPartition

from recovery.config import KafkaSettings
from recovery.frames import RECORDS
from recovery.kafka.clients import consumer
from recovery.kafka.topics import partitions_for
from recovery.live.state import parse_records
from recovery.spec import PipelineSpec


def read_topic(settings: KafkaSettings, topic: str, timeout_s: float = 60.0) -> pl.DataFrame:
    """Every record of ``topic`` below its current end offsets, ordered by partition and offset."""
    rows: dict[str, list[Any]] = {name: [] for name in RECORDS}
    with consumer(settings) as c:
        parts = [TopicPartition(topic, p) for p in partitions_for(settings, topic)]
        c.assign(parts)
        end = c.end_offsets(parts)
        c.seek_to_beginning(*parts)
        remaining = {tp for tp in parts if end[tp] > 0}
        deadline = time.monotonic() + timeout_s
        while remaining:
            assert time.monotonic() < deadline, f"did not reach the end offsets of {sorted(remaining)}"
            for tp, batch in c.poll(timeout_ms=500, max_records=10_000).items():
                for r in batch:
                    if r.offset < end[tp]:
                        for name, value in zip(
                            RECORDS.names(), (tp.partition, r.offset, r.timestamp, r.key, r.value), strict=True
                        ):
                            rows[name].append(value)
            remaining = {tp for tp in remaining if c.position(tp) < end[tp]}
    return pl.DataFrame(rows, schema=RECORDS).sort("partition", "offset")


def valid_events(records: pl.DataFrame, spec: PipelineSpec) -> pl.DataFrame:
    """EVENTS of the valid raw records (the worker's parse), deduplicated by event id (first by offset)."""
    events, _ = parse_records(records, spec)
    return events.sort("partition", "offset").unique("event_id", keep="first", maintain_order=True)


SPEC_TEMPLATE = """\
[topics]
raw = "{prefix}.raw"
output = "{prefix}.out"
corrections = "{prefix}.corr"
audit = "{prefix}.audit"
partitions = {partitions}

[[metrics]]
name = "sma_5"
kind = "sma"
n = 5

[[metrics]]
name = "mean_1m"
kind = "mean"
window_ms = 60_000
grace_ms = 5_000

[[metrics]]
name = "vwap_5m"
kind = "vwap"
window_ms = 300_000
hop_ms = 60_000
grace_ms = 5_000
"""


def write_spec(directory: Path, prefix: str, partitions: int = 3) -> Path:
    """A pipeline spec with the example metrics and topics named after ``prefix`` (unique per test)."""
    path = directory / f"{prefix}.toml"
    path.write_text(SPEC_TEMPLATE.format(prefix=prefix, partitions=partitions))
    return path


def run_live_cli(spec: Path, group: str, *args: str, timeout_s: float = 120) -> dict[str, Any]:
    """Run `recovery live --until-end --json` in a subprocess; its counters (fails on a non-zero exit)."""
    command = [sys.executable, "-m", "recovery", "live", "--spec", str(spec), "--group", group, "--until-end"]
    proc = subprocess.run(
        [*command, "--json", "--log-level", "WARNING", *args], capture_output=True, text=True, timeout=timeout_s
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return stats


def wait_committed(settings: KafkaSettings, topic: str, timeout_s: float = 30.0) -> None:
    """Wait until the transactions committed to ``topic`` are visible to read_committed readers.

    A transaction's commit markers are written to its partitions just after the commit returns; until then a
    read_committed end offset (the last stable offset) stays before its records, and a replay started at once
    snapshots an end without them (a reader that connects in 3 ms does; one that takes 0.1 s rarely does).
    """
    parts = [TopicPartition(topic, p) for p in partitions_for(settings, topic)]
    deadline = time.monotonic() + timeout_s
    with consumer(settings, isolation_level="read_uncommitted") as everything:
        written = everything.end_offsets(parts)
    with consumer(settings, isolation_level="read_committed") as committed:
        while committed.end_offsets(parts) != written:
            assert time.monotonic() < deadline, f"the commits to {topic} never became visible"
            time.sleep(0.01)
