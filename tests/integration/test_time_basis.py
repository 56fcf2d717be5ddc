"""A backfilled topic: Kafka timestamps are the write time, an hour after the events' own time.

By default the range is found by Kafka time: around the event times nothing is read, around the write times
every event is read and none falls in the range; both are one-line errors that name ``--time-basis event``.
With ``--time-basis event`` the recovery reads whole partitions by offset and gives the digest of the same
events written with event-time timestamps. Expected faults come from what the test injected (missing
results), the originals from the plain per-event reference of tests/unit/reference.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from recovery.cli import main
from recovery.config import KafkaSettings
from recovery.kafka.clients import producer
from recovery.pipeline.recover import recover
from recovery.records.outputs import encode_result
from recovery.source import KafkaSource
from recovery.spec import PipelineSpec
from recovery.timerange import now_ms
from tests.integration.engine_helpers import Tick, make_spec, produce, ticks
from tests.unit.reference import truth

HOUR_MS = 3_600_000


def published_at(result: tuple[str, str, int, int, float | None], spec: PipelineSpec) -> int:
    """When a live worker publishes a result: at its event (sma) or when its window closes."""
    _, metric, _, time_ms, _ = result
    m = spec.metric(metric)
    return time_ms + (m.window_ms or 0) + m.grace_ms if m.is_windowed else time_ms


def inside(result: tuple[str, str, int, int, float | None], spec: PipelineSpec, lo: int, hi: int) -> bool:
    """In the range as docs/semantics.md states it: sma by event time, time windows wholly inside."""
    m = spec.metric(result[1])
    end = result[3] + (m.window_ms or 0) if m.is_windowed else result[3] + 1
    return lo <= result[3] and end <= hi


def publish(settings: KafkaSettings, topic: str, results: list, stamps: list[int]) -> None:
    with producer(settings, linger_ms=10) as p:
        for (key, metric, window, time_ms, value), stamp in zip(results, stamps, strict=True):
            payload = encode_result(
                metric=metric,
                key=key,
                window=window,
                time_ms=time_ms,
                value=value,
                count=1,
                partition=0,
                first_offset=0,
                last_offset=0,
                worker="test",
            )
            p.send(topic, key=key.encode(), value=payload, timestamp_ms=stamp)
        p.flush()


def write_spec(spec: PipelineSpec, path: Path) -> Path:
    t = spec.topics
    lines = ["[topics]", *(f'{k} = "{getattr(t, k)}"' for k in ("raw", "output", "corrections", "audit"))]
    lines.append(f"partitions = {t.partitions}")
    for m in spec.to_dict()["metrics"]:
        lines.append("[[metrics]]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in m.items() if v is not None)
    path.write_text("\n".join(lines) + "\n")
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("recovery: error: "), err
    return err


def test_a_backfilled_topic_is_refused_by_kafka_time_and_recovered_by_event_time(
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    written = now_ms() // 60_000 * 60_000  # the backfill's write time
    start = written - HOUR_MS  # the events' own time, an hour earlier
    events = ticks(900, ["A", "B", "C", "D"], start_ms=start, step_ms=100)  # 90 s of events
    lo, hi = start, start + 90_000
    spec = make_spec(topic_factory)
    results = sorted(truth([{**t.__dict__, "key": t.symbol} for t in events], spec))
    originals = [r for i, r in enumerate(results) if i % 9 != 4]  # the injected faults: these are missing
    missing = [r for i, r in enumerate(results) if i % 9 == 4 and inside(r, spec, lo, hi)]

    # the same events and outputs twice: stamped with their event time, and backfilled (stamped at write time)
    event_stamped = make_spec(topic_factory)
    produce(kafka_settings, event_stamped.topics.raw, events)
    publish(kafka_settings, event_stamped.topics.output, originals, [published_at(r, spec) for r in originals])
    backfill: list[Tick] = [replace(t, kafka_ts=written + i) for i, t in enumerate(events)]
    produce(kafka_settings, spec.topics.raw, backfill)
    publish(kafka_settings, spec.topics.output, originals, [written + 10_000 + i for i in range(len(originals))])
    path = write_spec(spec, tmp_path / "spec.toml")

    # by Kafka time: around the event times nothing is read, around the write times nothing is compared
    err = one_line_error(capsys, ["recover", "--spec", str(path), "--from", str(lo), "--to", str(hi), "--out", "a"])
    assert "no raw events in" in err and "--time-basis event" in err
    around_writes = ["--from", str(written), "--to", str(written + 60_000)]
    err = one_line_error(capsys, ["recover", "--spec", str(path), *around_writes, "--out", str(tmp_path / "b")])
    assert f"{len(events):,} events read" in err and "no result compared" in err, err
    assert "Kafka timestamps are not event times" in err and "--time-basis event" in err and "--slack-ms" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    # by event time: whole partitions by offset, judged by event time; the digest of the event-stamped topics
    by_event = ["--from", str(lo), "--to", str(hi), "--time-basis", "event", "--quiet"]
    assert main(["recover", "--spec", str(path), *by_event, "--out", str(tmp_path / "event")]) == 0
    manifest = json.loads((tmp_path / "event" / "manifest.json").read_text())
    stamped = recover(
        spec,
        lo,
        hi,
        settings=kafka_settings,
        raw_source=KafkaSource(event_stamped.topics.raw, kafka_settings),
        outputs_source=KafkaSource(event_stamped.topics.output, kafka_settings),
    )
    assert stamped.fixset.counts["missing"] == len(missing) > 0
    assert stamped.fixset.counts["wrong"] == stamped.fixset.counts["extra"] == 0
    assert manifest["content"]["sources"] == stamped.fixset.content["sources"]
    assert manifest["digest"] == stamped.fixset.digest
