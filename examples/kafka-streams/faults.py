"""The live runs of the job: the incident (faults while it runs) and the clean run over the same orders.

The incident, in the order it happens to the raw topic's records (fractions of the delivery):

- 0-25 %: the job runs, committing every 30 s (Kafka Streams' default under at-least-once), and is killed
  with SIGKILL once it has published results from that stretch, before its first commit; restarted, it resumes
  from its committed offsets and restores its state from the changelogs, so it publishes some results again;
- later deployments commit every second, so that the script can tell from the committed offsets when a
  stretch is processed;
- 38-50 %: a bad deploy (``--revenue-in-cents``: amounts read as cents), then reverted;
- 60-68 %: a deploy writes to a misspelt output topic: that stretch of output is lost to downstream;
- the raw topic itself holds a re-sent batch (duplicates, ~72 %) and an offline till's late orders (~52 %),
  see ``generate.faulty_delivery``.

The clean run is a second deployment (fresh application id, clean output topic) over the same orders as the
generator made them, each once and in time: what the job publishes when nothing goes wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from generate import Order
from job import StreamsJob, create_topics, output_records, producer


@dataclass(frozen=True)
class Topics:
    """The topics of one story (a prefix keeps runs apart)."""

    prefix: str

    @property
    def raw(self) -> str:
        return f"{self.prefix}orders"

    @property
    def output(self) -> str:
        return f"{self.prefix}merchant-revenue"

    @property
    def misrouted(self) -> str:
        return f"{self.prefix}merchant-revenu"

    @property
    def clean_raw(self) -> str:
        return f"{self.prefix}orders.clean"

    @property
    def clean_output(self) -> str:
        return f"{self.prefix}merchant-revenue.clean"


@dataclass
class RunLog:
    """What the incident did and when (wall-clock seconds since its start)."""

    steps: list[tuple[float, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.steps.append((round(time.monotonic() - self.started, 1), what))
        print(f"  [{self.steps[-1][0]:6.1f} s] {what}", flush=True)


def _send(bootstrap: str, topic: str, records: list[Order]) -> None:
    p = producer(bootstrap)
    try:
        for o in records:
            p.send(topic, key=o.merchant.encode(), value=o.value(), timestamp_ms=o.created_ms)
        p.flush()
    finally:
        p.close()


def run_incident(bootstrap: str, topics: Topics, records: list[Order], work: Path) -> RunLog:
    """Run the job over ``records`` (the faulty delivery) with the incident's faults; returns what happened."""
    create_topics(bootstrap, topics.raw, topics.output, topics.misrouted)
    n = len(records)
    cut = [int(n * f) for f in (0.0, 0.25, 0.38, 0.50, 0.60, 0.68, 1.0)]
    app = f"{topics.prefix}merchant-revenue"
    log = RunLog()
    jobs: list[StreamsJob] = []

    def deploy(*flags: str, output: str = topics.output, commit_ms: int | None = 1000) -> StreamsJob:
        commit = ("--commit-interval-ms", str(commit_ms)) if commit_ms else ()
        jobs.append(StreamsJob(bootstrap, app, topics.raw, output, work, *commit, *flags))
        jobs[-1].start()
        return jobs[-1]

    try:
        _incident(bootstrap, topics, records, cut, deploy, log)
    finally:
        for job in jobs:
            job.kill()  # a no-op for a job that stopped; the one a failure left running
    return log


def _incident(
    bootstrap: str, topics: Topics, records: list[Order], cut: list[int], deploy: Callable[..., StreamsJob], log: RunLog
) -> None:
    job = deploy(commit_ms=None)
    log.note("job started (commits every 30 s, Kafka Streams' default under at-least-once)")
    published = output_records(bootstrap, topics.output)
    _send(bootstrap, topics.raw, records[cut[0] : cut[1]])
    job.published(topics.output, published + 20)
    job.kill()
    log.note("SIGKILL mid-stream, after it published results but before its first commit")
    job = deploy()
    log.note("restarted: resumes from the committed offsets and the changelogs")
    job.caught_up()
    _send(bootstrap, topics.raw, records[cut[1] : cut[2]])
    job.caught_up()
    job.stop()
    job = deploy("--revenue-in-cents")
    log.note("bad deploy: --revenue-in-cents")
    _send(bootstrap, topics.raw, records[cut[2] : cut[3]])
    job.caught_up()
    job.stop()
    job = deploy()
    log.note("bad deploy reverted")
    _send(bootstrap, topics.raw, records[cut[3] : cut[4]])
    job.caught_up()
    job.stop()
    job = deploy(output=topics.misrouted)
    log.note(f"deploy with output topic {topics.misrouted!r}: output lost to downstream")
    _send(bootstrap, topics.raw, records[cut[4] : cut[5]])
    job.caught_up()
    job.stop()
    job = deploy()
    log.note("output topic fixed")
    _send(bootstrap, topics.raw, records[cut[5] : cut[6]])
    job.caught_up()
    job.stop()
    log.note("incident run done")


def run_clean(bootstrap: str, topics: Topics, orders: list[Order], work: Path) -> RunLog:
    """The same job over the same orders, each once and in time, with a fresh application id and output."""
    create_topics(bootstrap, topics.clean_raw, topics.clean_output)
    log = RunLog()
    _send(bootstrap, topics.clean_raw, orders)
    app = f"{topics.prefix}merchant-revenue-clean"
    job = StreamsJob(bootstrap, app, topics.clean_raw, topics.clean_output, work, "--commit-interval-ms", "1000")
    try:
        job.start()
        log.note("clean job started")
        job.caught_up()
        job.stop()
    finally:
        job.kill()
    log.note("clean run done")
    return log
