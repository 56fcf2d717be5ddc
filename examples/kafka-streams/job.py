"""The example's Kafka Streams job as a ``java`` process, and the Kafka plumbing the scripts share.

The scripts talk to Kafka with kafka-python directly: the example stands apart from the toolkit it checks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

HERE = Path(__file__).resolve().parent
JAR = HERE / "target" / "merchant-revenue.jar"
MAIN = "io.recovery.examples.kstreams.MerchantRevenue"
PARTITIONS = 3


class JobError(RuntimeError):
    """The job did not build, start, keep up or stop; the message says where its log is."""


def create_topics(bootstrap: str, *names: str, partitions: int = PARTITIONS) -> None:
    """Create ``names`` (kept forever: the orders are stamped in the past)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [NewTopic(n, partitions, 1, topic_configs={"retention.ms": "-1"}) for n in names], timeout_ms=30_000
        )
    finally:
        admin.close()


def producer(bootstrap: str) -> KafkaProducer:
    """A producer that waits for every record (acks=all)."""
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> end offset of ``topic`` now."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def output_records(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` so far (the sum of its end offsets)."""
    return sum(end_offsets(bootstrap, topic).values())


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """partition -> offset the consumer group ``group`` committed on ``topic`` (0 when none)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        found = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in found.items() if tp.topic == topic and meta.offset >= 0}


class StreamsJob:
    """One deployment of the job: started with its arguments, stopped (SIGTERM) or killed (SIGKILL)."""

    def __init__(
        self, bootstrap: str, app_id: str, input_topic: str, output_topic: str, work: Path, *flags: str
    ) -> None:
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.input_topic = input_topic
        self.args = [
            "--bootstrap", bootstrap, "--application-id", app_id, "--input", input_topic,
            "--output", output_topic, "--state-dir", str(work / "state" / app_id), *flags,
        ]  # fmt: skip
        self.log = work / "logs" / f"{app_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120) -> None:
        """Start the ``java`` process and wait until Kafka Streams reports RUNNING."""
        if not JAR.is_file():
            raise JobError(f"{JAR} is missing: build it with `mvn -q -B -f {HERE / 'pom.xml'} package` (make setup)")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        classpath = f"{JAR}{os.pathsep}{JAR.parent / 'lib' / '*'}"
        with self.log.open("ab") as log:
            log.write(f"== start {' '.join(self.args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                ["java", "-Xmx256m", "-cp", classpath, MAIN, *self.args], stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout_s
        while b"RUNNING" not in self.log.read_bytes().rsplit(b"== start", 1)[-1]:
            self._alive()
            if time.monotonic() > deadline:
                raise JobError(f"the job did not reach RUNNING within {timeout_s:.0f} s; see {self.log}")
            time.sleep(0.1)

    def _alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise JobError(f"the job exited (code {self.proc.returncode if self.proc else None}); see {self.log}")

    def caught_up(self, timeout_s: float = 240) -> None:
        """Wait until the job has committed every record of its input topic written so far."""
        target = end_offsets(self.bootstrap, self.input_topic)
        deadline = time.monotonic() + timeout_s
        while True:
            done = committed(self.bootstrap, self.app_id, self.input_topic)
            if all(done.get(p, 0) >= end for p, end in target.items()):
                return
            self._alive()
            if time.monotonic() > deadline:
                raise JobError(
                    f"the job did not reach offsets {target} within {timeout_s:.0f} s (at {done}); see {self.log}"
                )
            time.sleep(0.2)

    def published(self, topic: str, records: int, timeout_s: float = 60) -> None:
        """Wait until ``topic`` holds at least ``records`` records."""
        deadline = time.monotonic() + timeout_s
        while output_records(self.bootstrap, topic) < records:
            self._alive()
            if time.monotonic() > deadline:
                raise JobError(f"{topic} did not reach {records} records within {timeout_s:.0f} s; see {self.log}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 60) -> None:
        """A clean shutdown (SIGTERM): Kafka Streams commits and closes."""
        self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL: no commit, no flush; the next start resumes from the last commit and the changelogs."""
        self._end(signal.SIGKILL, 30)

    def _end(self, sig: signal.Signals, timeout_s: float) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise JobError(f"the job did not stop within {timeout_s:.0f} s of {sig.name}; see {self.log}") from None
        self.proc = None
