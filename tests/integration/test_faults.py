"""Faults during the recovery itself: broker killed mid-replay and mid-publish, publish killed, concurrent
publishes, live worker killed. Short versions run in ``make test``; ``slow`` variants (``make soak``,
``RECOVERY_SOAK=1``) repeat them. Soak figures go to docs/reliability.md.

Tests that kill the broker use a dedicated broker (module scope, a temporary directory, tied to the test
process) so that the session broker of the other tests is never disturbed. Exactly once is checked by an
independent reader: Kafka's own console consumer with ``--isolation-level read_committed``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import recovery.fixes.publish as publish_module
import recovery.kafka.kafka_python as replay_io
from recovery.config import PROJECT_ROOT, KafkaSettings
from recovery.errors import RecoveryError
from recovery.fixes.approval import approve
from recovery.fixes.audit import read_audit
from recovery.fixes.publish import publish
from recovery.kafka.broker import LocalBroker
from recovery.kafka.topics import ensure_topic
from recovery.live.state import parse_records
from recovery.metrics.recompute import recompute
from recovery.pipeline.compare import compare
from recovery.pipeline.recover import recover
from recovery.records.outputs import decode_outputs
from recovery.replay.bounded import replay
from recovery.source import KafkaSource
from recovery.spec import FieldsSpec, MetricSpec, PipelineSpec, TopicsSpec
from tests.integration.engine_helpers import BASE_MS, make_spec, produce, ticks
from tests.integration.readback import read_topic, valid_events, write_spec
from tests.integration.test_live import SYMBOLS, make_topics, produce_ticks
from tests.integration.test_publish import CORRECTIONS, write_fix

CHUNK = 400  # the 2,000 corrections of a fix set go in 5 transactions
SOAK_TRIALS = int(os.environ.get("RECOVERY_SOAK_TRIALS", "20"))
CONSOLE_CONSUMER = PROJECT_ROOT / "kafka" / "bin" / "kafka-console-consumer.sh"
METRICS = (MetricSpec("sma_5", "sma", n=5), MetricSpec("mean_1m", "mean", window_ms=60_000, grace_ms=5_000))
FIGURES = Path(os.environ.get("RECOVERY_SOAK_FIGURES", "")) if os.environ.get("RECOVERY_SOAK_FIGURES") else None


def record_figure(name: str, **figures: Any) -> None:
    """Append one trial's figures (JSON lines) when RECOVERY_SOAK_FIGURES names a file."""
    if FIGURES is not None:
        with FIGURES.open("a") as f:
            f.write(json.dumps({"test": name, **figures}) + "\n")


# -- a broker of our own, to kill -------------------------------------------------------------------------


class OwnBroker:
    def __init__(self, broker: LocalBroker, address: str) -> None:
        self.broker = broker
        self.settings = KafkaSettings.from_env(env={"KAFKA_BOOTSTRAP_SERVERS": address})

    def restart(self) -> float:
        """Start the killed broker on the same data directory and port; seconds until it serves metadata.

        Call from the main thread: the broker is tied to the thread that starts it.
        """
        started = time.monotonic()
        self.broker.restart(tie_to_parent=True, timeout_s=90)
        return time.monotonic() - started

    def topic(self, prefix: str, partitions: int = 3) -> str:
        name = f"{prefix}-{os.urandom(4).hex()}"
        ensure_topic(self.settings, name, partitions)
        return name


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-faults"))
    address = broker.start(tie_to_parent=True, timeout_s=90)
    try:
        yield OwnBroker(broker, address)
    finally:
        broker.stop()


def console_consumer_counts(settings: KafkaSettings, topic: str, digest: str) -> Counter[str]:
    """Copies per record key carrying ``digest``, read by Kafka's console consumer (read_committed).

    The console consumer stops 8 s after the last record it received; the count is then compared with the
    exact number expected, so a premature stop shows up as a lost correction, never as a pass.
    """
    proc = subprocess.run(
        [
            str(CONSOLE_CONSUMER),
            "--bootstrap-server",
            settings.bootstrap_servers,
            "--topic",
            topic,
            "--from-beginning",
            "--isolation-level",
            "read_committed",
            "--property",
            "print.key=true",
            "--property",
            "key.separator=\t",
            "--timeout-ms",
            "8000",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "KAFKA_HEAP_OPTS": "-Xmx256m"},
    )
    copies: Counter[str] = Counter()
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("\t")
        if value.startswith("{") and json.loads(value).get("digest") == digest:
            copies[key] += 1
    return copies


def assert_exactly_once(settings: KafkaSettings, spec: PipelineSpec, digest: str, expected: int) -> dict[str, int]:
    """Every correction committed exactly once (console consumer) and one publish audit record."""
    copies = console_consumer_counts(settings, spec.topics.corrections, digest)
    lost = expected - len(copies)
    duplicates = sum(n - 1 for n in copies.values())
    audits = read_audit(settings, spec.topics.audit, digest=digest, event="publish")
    assert (lost, duplicates, len(audits)) == (0, 0, 1), f"lost {lost}, duplicates {duplicates}, audits {len(audits)}"
    return {"lost": lost, "duplicates": duplicates, "audit_records": len(audits)}


def run_publish_cli(directory: Path, settings: KafkaSettings) -> subprocess.Popen[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    return subprocess.Popen(
        [sys.executable, "-m", "recovery", "publish", str(directory), "--chunk-size", str(CHUNK)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- (a) broker killed mid-replay --------------------------------------------------------------------------


def _replay_with_broker_kill(own: OwnBroker, run: Callable[[], Any], topic: str, after_polls: int) -> tuple[Any, dict]:
    """Run ``run`` in a thread; at its ``after_polls``-th poll of ``topic`` SIGKILL and restart the broker."""
    reached, killed = threading.Event(), threading.Event()
    polls = Counter[str]()
    original = replay_io.guarded

    def guarded(settings: KafkaSettings, action: str, call: Callable[[], Any]) -> Any:
        if action.startswith(f"replaying {topic}["):
            polls["raw"] += 1
            if polls["raw"] == after_polls:
                reached.set()
                assert killed.wait(120), "the broker was not killed"
        return original(settings, action, call)

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run()
        except BaseException as exc:  # reported in the main thread
            outcome["error"] = exc

    replay_io.guarded = guarded  # type: ignore[assignment]
    try:
        worker = threading.Thread(target=target)
        worker.start()
        assert reached.wait(120), f"the replay never reached poll {after_polls} ({sorted(outcome)})"
        own.broker.kill()
        killed.set()
        away_s = own.restart()
        worker.join(180)
        assert not worker.is_alive(), "the replay did not finish"
    finally:
        replay_io.guarded = original  # type: ignore[assignment]
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"], {"polls": polls["raw"], "kill_at_poll": after_polls, "away_s": round(away_s, 1)}


def _replay_trial(own: OwnBroker, tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, output = own.topic("faults-raw"), own.topic("faults-out")
    topics = TopicsSpec(raw=raw, output=output, corrections=f"{output}.corr", audit=f"{output}.audit", partitions=3)
    spec = PipelineSpec(topics, FieldsSpec(), METRICS)
    items = ticks(20_000, [f"S{i}" for i in range(6)], seed=seed)
    produce(own.settings, raw, items)
    from_ms, to_ms = BASE_MS, BASE_MS + 20_000 * 100

    # the kill is hooked into kafka-python's reads (the default client is librdkafka when it is installed)
    def run(out: Path) -> Any:
        # kafka-python, in this process: the test counts that client's polls to land the kill mid-read
        return recover(
            spec, from_ms, to_ms, out_dir=out, incident="INC-F", settings=own.settings, client="kafka-python", workers=1
        )

    undisturbed = run(tmp_path / f"calm-{seed}")
    plain = replay(KafkaSource(raw, own.settings), quiet=True, client="kafka-python").frame()
    monkeypatch.setitem(replay_io._CONSUMER_CONFIG, "max_poll_records", 500)  # many polls: the kill lands mid-read
    kill_at = random.Random(seed).randint(2, 20)
    disturbed, info = _replay_with_broker_kill(own, lambda: run(tmp_path / f"killed-{seed}"), raw, kill_at)
    assert info["polls"] > kill_at + 1, f"the kill did not land mid-read: {info}"
    assert disturbed.fixset.digest == undisturbed.fixset.digest
    assert disturbed.truth.replay.count == plain.height == 20_000
    assert disturbed.fixset.corrections.height > 0
    record_figure("replay", seed=seed, digest_equal=True, **info)


def test_replay_survives_broker_kill_and_restart(
    own: OwnBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _replay_trial(own, tmp_path, 1, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(SOAK_TRIALS))
def test_replay_survives_broker_kill_and_restart_soak(
    own: OwnBroker, tmp_path: Path, trial: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _replay_trial(own, tmp_path, 100 + trial, monkeypatch)


# -- (b) publish SIGKILLed at random points, then rerun ----------------------------------------------------


def _publish_kill_trial(settings: KafkaSettings, spec: PipelineSpec, directory: Path, seed: int) -> dict[str, Any]:
    """SIGKILL a CLI publish after a random delay (it may also finish first), rerun, check exactly once."""
    fixset = write_fix(spec, directory)
    approve(directory, "faults", settings)
    delay_s = random.Random(seed).uniform(0.8, 4.5)  # from the interpreter's start to past the commit
    proc = run_publish_cli(directory, settings)
    try:
        proc.wait(timeout=delay_s)
    except subprocess.TimeoutExpired:
        proc.kill()  # SIGKILL
    proc.communicate(timeout=30)
    first = "killed" if proc.returncode == -9 else f"exit {proc.returncode}"
    report = publish(directory, settings)
    assert report.verified or report.status == "already-published"
    figures = assert_exactly_once(settings, spec, fixset.digest, CORRECTIONS)
    figures.update(seed=seed, delay_s=round(delay_s, 2), first_run=first, rerun=report.status)
    record_figure("publish-kill", **figures)
    return figures


@pytest.mark.parametrize("trial", range(3))
def test_publish_killed_at_random_points_is_exactly_once(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path, trial: int
) -> None:
    _publish_kill_trial(kafka_settings, make_spec(topic_factory), tmp_path / "fx", seed=trial)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(SOAK_TRIALS))
def test_publish_killed_at_random_points_is_exactly_once_soak(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path, trial: int
) -> None:
    _publish_kill_trial(kafka_settings, make_spec(topic_factory), tmp_path / "fx", seed=1000 + trial)


# -- (c) broker SIGKILLed and restarted during publish -----------------------------------------------------


def _own_spec(own: OwnBroker) -> PipelineSpec:
    raw, output = own.topic("faults-raw"), own.topic("faults-out")
    topics = TopicsSpec(raw=raw, output=output, corrections=f"{output}.corr", audit=f"{output}.audit", partitions=3)
    return PipelineSpec(topics, FieldsSpec(), METRICS)


def _publish_broker_restart_trial(own: OwnBroker, directory: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kill the broker after a random number of sends inside the open transaction, restart it, rerun."""
    spec = _own_spec(own)
    fixset = write_fix(spec, directory)
    approve(directory, "faults", own.settings)
    after_sends = random.Random(seed).randint(1, CORRECTIONS - 1)
    reached, killed = threading.Event(), threading.Event()

    def crash_hook(tx: Any) -> Callable[[int], None]:
        def hook(sent: int) -> None:
            if sent == after_sends:
                tx.flush()
                reached.set()
                assert killed.wait(120)

        return hook

    monkeypatch.setattr(publish_module, "_crash_hook", crash_hook)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["report"] = publish(directory, own.settings, chunk_size=CHUNK, client="kafka-python")
        except RecoveryError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=target)
    worker.start()
    assert reached.wait(120), "the publish never reached its sends"
    own.broker.kill()
    killed.set()
    away_s = own.restart()
    worker.join(180)
    assert not worker.is_alive(), "the publish hung"
    monkeypatch.undo()
    first = outcome["report"].status if "report" in outcome else f"error: {type(outcome['error']).__name__}"
    rerun = publish(directory, own.settings, chunk_size=CHUNK)
    figures = assert_exactly_once(own.settings, spec, fixset.digest, CORRECTIONS)
    record_figure(
        "publish-broker-restart",
        seed=seed,
        after_sends=after_sends,
        away_s=round(away_s, 1),
        first_run=first,
        rerun=rerun.status,
        **figures,
    )


def test_publish_survives_broker_restart(own: OwnBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _publish_broker_restart_trial(own, tmp_path / "fx", 7, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(SOAK_TRIALS))
def test_publish_survives_broker_restart_soak(
    own: OwnBroker, tmp_path: Path, trial: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish_broker_restart_trial(own, tmp_path / "fx", 2000 + trial, monkeypatch)


# -- (d) two publishes of one fix set at the same time -----------------------------------------------------


def _concurrent_trial(settings: KafkaSettings, spec: PipelineSpec, directory: Path, trial: int) -> None:
    fixset = write_fix(spec, directory)
    approve(directory, "faults", settings)
    procs = [run_publish_cli(directory, settings) for _ in range(2)]
    results = [(p.wait(timeout=180), p.communicate(timeout=30)) for p in procs]
    codes = sorted(code for code, _ in results)
    for code, (_out, err) in results:
        assert code in (0, 2), err[-2000:]  # a fenced run stops with a one-line error
        if code == 2:
            assert "Traceback" not in err
    if codes != [0, 0]:
        assert publish(directory, settings).status in ("already-published", "resumed", "published")
    figures = assert_exactly_once(settings, spec, fixset.digest, CORRECTIONS)
    record_figure("concurrent-publish", trial=trial, exit_codes=codes, **figures)


def test_concurrent_publishes_commit_one_copy(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    _concurrent_trial(kafka_settings, make_spec(topic_factory), tmp_path / "fx", 0)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(SOAK_TRIALS))
def test_concurrent_publishes_commit_one_copy_soak(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path, trial: int
) -> None:
    _concurrent_trial(kafka_settings, make_spec(topic_factory), tmp_path / "fx", trial)


# -- (e) live worker SIGKILLed mid-stream, restarted ---------------------------------------------------------


def _live_kill_trial(
    settings: KafkaSettings, unique_name: Callable[[str], str], tmp_path: Path, seed: int
) -> dict[str, Any]:
    from recovery.spec import load_spec

    spec_path = write_spec(tmp_path, unique_name("faults-live"), partitions=3)
    spec = load_spec(spec_path)
    make_topics(settings, spec)
    produce_ticks(settings, spec.topics.raw, 3000, SYMBOLS[:6], seed=seed)
    raw = read_topic(settings, spec.topics.raw)
    sizes = raw.group_by("partition").len().filter(pl.col("len") > 200).sort("partition")
    assert sizes.height, "no partition has enough records"
    rnd = random.Random(seed)
    partition = int(sizes.item(rnd.randrange(sizes.height), "partition"))
    offset = rnd.randrange(50, 150)
    group = unique_name("g")
    base = [sys.executable, "-m", "recovery", "live", "--spec", str(spec_path), "--group", group, "--until-end"]
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    killed = subprocess.run(
        [*base, "--log-level", "WARNING", "--crash", f"{partition}:{offset}:40:commit-after"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    restarted = subprocess.run(
        [*base, "--log-level", "WARNING", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    outputs, bad = decode_outputs(read_topic(settings, spec.topics.output))
    assert bad.height == 0
    # at-least-once: every raw record is the last input of some sma output (one per event)
    events, _ = parse_records(raw, spec)
    covered = (
        read_topic(settings, spec.topics.output)
        .select(
            pl.col("value")
            .cast(pl.String)
            .str.json_decode(pl.Struct({"metric": pl.String, "partition": pl.Int64, "last_offset": pl.Int64}))
            .alias("v")
        )
        .unnest("v")
        .filter(pl.col("metric") == "sma_5")
    )
    lost = events.join(
        covered.select(pl.col("partition").cast(pl.Int32), pl.col("last_offset").alias("offset")).unique(),
        on=["partition", "offset"],
        how="anti",
    )
    assert lost.height == 0, f"{lost.height} input events have no output"
    # every re-published output is flagged by compare: duplicate (last copy right) or wrong; wrong also flags
    # results after the restart whose state was cold (the first n-1 sma of a key, windows open at the kill)
    truth = recompute(valid_events(raw, spec), spec)
    result = compare(outputs, truth, spec)
    keys = ["key", "metric", "window"]
    published_twice = outputs.group_by(keys).len().filter(pl.col("len") > 1).drop("len")
    flagged = result.filter(pl.col("status").is_in(["duplicate", "wrong", "extra"]))
    assert published_twice.height > 0
    assert published_twice.join(flagged, on=keys, how="anti").height == 0, "a re-published output went unreported"
    duplicate = flagged.filter(pl.col("status") == "duplicate")
    assert duplicate.join(published_twice, on=keys, how="anti").height == 0
    cold_sma = flagged.filter((pl.col("metric") == "sma_5") & (pl.col("status") == "wrong"))
    assert cold_sma.height <= 4 * cold_sma.get_column("key").n_unique()  # n-1 per key at most
    assert flagged.filter(pl.col("status") == "extra").height == 0
    figures = {
        "seed": seed,
        "crash": f"{partition}:{offset}:40",
        "republished": published_twice.height,
        "reported_duplicate": flagged.filter(pl.col("status") == "duplicate").height,
        "reported_wrong": flagged.filter(pl.col("status") == "wrong").height,
        "lost": 0,
    }
    record_figure("live-kill", **figures)
    return figures


def test_live_worker_killed_loses_no_input(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    _live_kill_trial(kafka_settings, unique_name, tmp_path, 3)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(SOAK_TRIALS))
def test_live_worker_killed_loses_no_input_soak(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str], tmp_path: Path, trial: int
) -> None:
    _live_kill_trial(kafka_settings, unique_name, tmp_path, 300 + trial)
