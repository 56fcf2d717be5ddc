"""Run the Quix Streams app as its own process and break it the ways incidents happen.

The raw stream is written in stretches while the app runs; between stretches the app is:

1. killed with SIGKILL as soon as it has published results of the new stretch (before it committed them),
   then restarted: it resumes from its committed offsets and its state changelog and publishes again;
2. redeployed with ``--bad-deploy`` for one stretch, then reverted;
3. redeployed with its sink on another topic for one stretch (the results are lost), then reverted.

Duplicated and late readings are already in the stream (:func:`generate.with_input_faults`). The clean run
is the same app over the clean stream with a fresh application id, output topic and state directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from generate import Record, produce

# a group coordinator that is moving or loading: ask again
RETRY_CODES = (
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
)

HERE = Path(__file__).resolve().parent
APP_PYTHON = os.environ.get("QUIX_PYTHON", str(HERE / ".venv" / "bin" / "python"))
CATCH_UP_TIMEOUT_S = 120.0


@dataclass
class AppRun:
    """One run of the app: where it reads and writes, its group and state, and what happened to it."""

    bootstrap: str
    input: str
    output: str
    app_id: str
    state_dir: Path
    log: Path
    events: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, *flags: str) -> None:
        """Start the app process (``flags``: --bad-deploy, --sink TOPIC)."""
        if not Path(APP_PYTHON).exists():
            raise RuntimeError(f"no Quix Streams environment at {APP_PYTHON}: run `make setup` first")
        cmd = [APP_PYTHON, str(HERE / "app.py"), "--broker", self.bootstrap, "--input", self.input]
        cmd += ["--output", self.output, "--app-id", self.app_id, "--state-dir", str(self.state_dir), *flags]
        out = self.log.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=HERE)
        self.events.append(f"start {' '.join(flags) or '(normal)'}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the app: SIGTERM lets it commit and close; SIGKILL does not."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.events.append(f"stop {sig.name}")
        self.proc = None

    def alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the Quix app exited with {self.proc.returncode}; its log ends with:\n{tail}")

    def wait_caught_up(self) -> None:
        """Wait until the app's committed offsets reach the input topic's end offsets."""
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.app_id, "enable.auto.commit": False})
        try:
            meta = probe.list_topics(self.input, timeout=10).topics[self.input]
            parts = [TopicPartition(self.input, p) for p in sorted(meta.partitions)]
            marks = {tp.partition: probe.get_watermark_offsets(tp, timeout=10) for tp in parts}
            # an empty partition has no committed offset to wait for
            ends = {p: high for p, (low, high) in marks.items() if high > low}
            deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
            while True:
                self.alive()
                try:
                    committed = {tp.partition: tp.offset for tp in probe.committed(parts, timeout=10)}
                except KafkaException as exc:  # the group's coordinator is still being elected or loaded
                    if not exc.args[0].retriable() and exc.args[0].code() not in RETRY_CODES:
                        raise
                    time.sleep(0.5)
                    continue
                if all(committed[p] >= end for p, end in ends.items()):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the Quix app {self.app_id} did not catch up on {self.input} within {CATCH_UP_TIMEOUT_S:.0f} s"
                        f" (committed {committed}, end {ends}); see {self.log}"
                    )
                time.sleep(0.2)
        finally:
            probe.close()


def end_total(bootstrap: str, topic: str) -> int:
    """Sum of a topic's end offsets."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "end-offsets-probe"})
    try:
        meta = probe.list_topics(topic, timeout=10).topics[topic]
        return sum(probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions)
    finally:
        probe.close()


def faulty_run(run: AppRun, raw: list[Record], lost_topic: str) -> list[str]:
    """Write ``raw`` in five stretches while the app runs, with a crash, a bad deploy and a lost sink."""
    n = len(raw)
    cuts = [0, int(n * 0.30), int(n * 0.45), int(n * 0.60), int(n * 0.75), n]
    stretch = [raw[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]

    produce(run.bootstrap, run.input, stretch[0])
    run.start()
    run.wait_caught_up()

    # 1. SIGKILL mid-stream, as soon as results of the new stretch are out and before they are committed
    before = end_total(run.bootstrap, run.output)
    produce(run.bootstrap, run.input, stretch[1])
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while end_total(run.bootstrap, run.output) == before:
        run.alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Quix app published nothing for stretch 2; see {run.log}")
        time.sleep(0.02)
    run.stop(signal.SIGKILL)
    run.start()  # restarts from its committed offsets and restores its state
    run.wait_caught_up()
    run.stop()

    # 2. a bad deploy for one stretch, then reverted
    run.start("--bad-deploy")
    produce(run.bootstrap, run.input, stretch[2])
    run.wait_caught_up()
    run.stop()

    # 3. the sink misrouted for one stretch: those results never reach the output topic
    run.start("--sink", lost_topic)
    produce(run.bootstrap, run.input, stretch[3])
    run.wait_caught_up()
    run.stop()

    run.start()
    produce(run.bootstrap, run.input, stretch[4])
    run.wait_caught_up()
    run.stop()
    return run.events


def clean_run(run: AppRun, clean: list[Record]) -> list[str]:
    """The same app over the clean stream, start to end, untouched."""
    produce(run.bootstrap, run.input, clean)
    run.start()
    run.wait_caught_up()
    run.stop()
    return run.events


if __name__ == "__main__":
    sys.exit("run the whole story with `make example-quix` (examples/quix-streams/story.py)")
