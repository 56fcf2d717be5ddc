"""Differential tests: recovering a range of a generated incident gives what a plain per-event reference says.

Each example is a small incident (tests/unit/pipeline/differential.py): few or many keys, sparse and dense, on one to
three partitions (skewed or not), late records from seconds to a quarter of an hour, duplicates re-sent late,
conflicting copies that may arrive first, drops (seq 1 and runs included), malformed records, a faulty live
worker's outputs, and a range that starts and ends anywhere. The incident is written to archive files and
recovered on every engine path; the corrections, class counts, seq gaps and quarantine are checked against
the reference, which works from the full logs and the documented semantics only.

``make test`` runs a bounded number of examples per path (RECOVERY_DIFF_EXAMPLES, default 25);
RECOVERY_SOAK=1 runs many more (default 500) and explores new examples on every run.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from . import differential as diff
from .differential import ENGINE_PATHS, EnginePath, Incident

SOAK = os.environ.get("RECOVERY_SOAK") == "1"
EXAMPLES = int(os.environ.get("RECOVERY_DIFF_EXAMPLES", "500" if SOAK else "25"))

harness = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not SOAK,  # make test: the same examples every run; soak: new ones
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

CHECKS = {
    "corrections": lambda incident, report: diff.correction_violations(incident, report, diff.expected(incident)),
    "gaps": lambda incident, report: diff.gap_violations(incident, report.truth.events.gaps),
    "quarantine": lambda incident, report: diff.quarantine_violations(incident, report.truth.quarantine),
}


def _fail(incident: Incident, path: EnginePath, check: str, problems: list[str]) -> None:
    shown = "\n  ".join(problems[:12])
    more = f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else ""
    pytest.fail(f"{path.name}: {check} differ from the reference for {incident.describe()}:\n  {shown}{more}")


@pytest.mark.timeout(7200 if SOAK else 300)
@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("path", ENGINE_PATHS, ids=[p.name for p in ENGINE_PATHS])
@harness
@given(incident=diff.incidents())
def test_recovery_of_a_generated_incident_matches_the_reference(
    path: EnginePath, check: str, incident: Incident
) -> None:
    report = diff.recover_files(incident, path)
    problems = CHECKS[check](incident, report)
    if problems:
        _fail(incident, path, check, problems)


# ----------------------------------------------------------------------------------- the harness itself


@settings(max_examples=60 if not SOAK else 400, deadline=None, derandomize=not SOAK, database=None)
@given(incident=diff.incidents())
def test_generated_incidents_keep_the_promises_the_checks_rely_on(incident: Incident) -> None:
    """Lateness below the slack, publish delays bounded, a key on one partition with its outputs, offsets in
    write order, seq order = event-time order, a non-empty range: what makes the reference's claims sound."""
    home: dict[str, int] = {}
    for r in incident.raw:
        key = r.key.decode()
        assert home.setdefault(key, r.partition) == r.partition, f"{key} on two raw partitions"
        event_ts = r.event.ts if r.event is not None else None
        if event_ts is not None:
            assert 0 <= r.write_ms - event_ts < diff.SLACK_MS
            assert r.timestamp_ms in (event_ts, r.write_ms)
    for o in incident.outputs:
        assert home[o.key] == o.partition, f"outputs of {o.key} in another partition than its raw events"
        assert o.time_ms <= o.publish_ms < o.time_ms + diff.SLACK_MS
    assert {r.partition for r in incident.raw} == {o.partition for o in incident.outputs}
    for records in (incident.raw, incident.outputs):
        by_partition: dict[int, list[int]] = {}
        for r in records:
            by_partition.setdefault(r.partition, []).append(r.offset)
        assert all(offsets == list(range(len(offsets))) for offsets in by_partition.values())
    write_order = [(r.partition, r.write_ms) for r in incident.raw]
    assert write_order == sorted(write_order)
    for key, seqs in diff.seq_facts(incident).valid.items():
        ordered = sorted(seqs)
        assert [seqs[s] for s in ordered] == sorted(seqs[s] for s in ordered), f"{key}: seq order is not time order"
    assert incident.from_ms < incident.to_ms
    assert any(incident.from_ms <= r.timestamp_ms < incident.to_ms + diff.SLACK_MS for r in incident.raw)


def test_the_generator_covers_every_class_and_fault() -> None:
    """Guards the harness against quietly generating clean incidents: over a fixed sample of parameter sets,
    every class, conflicting duplicates, drops in range, malformed records in range, both Kafka time modes,
    full-history reads and lookback traps all occur."""
    seen: Counter[str] = Counter()
    for seed in range(40):
        p = diff.Params(
            seed=seed,
            keys=1 + seed % 8,
            partitions=1 + seed % 3,
            skewed=seed % 2 == 0,
            kafka_time="event" if seed % 2 else "write",
            sparse_pct=(seed * 37) % 101,
            late_pct=20,
            dup_pct=15,
            conflict_pct=15,
            drop_pct=10,
            malformed_pct=10,
            extra_pct=10,
            republish_pct=15,
            full_history=seed % 4 == 0,
            trap_pct=30 if seed % 3 == 0 else 0,
        )
        incident = diff.generate(p)
        want = diff.expected(incident)
        seen.update({k for k, v in want.counts.items() if v})
        seen[f"kafka time {p.kafka_time}"] += 1
        seen["full history"] += incident.full_history
        lo, hi = incident.from_ms, incident.to_ms
        seen["malformed in range"] += any(r.event is None and lo <= r.timestamp_ms < hi for r in incident.raw)
        seen["conflicting copy first"] += any(r.kind == "conflicting" and r.order[0] == 0 for r in incident.raw)
        seen["drops"] += any(incident.dropped.values())
        seen["seq 1 dropped"] += any(1 in d for d in incident.dropped.values())
        seen["trap"] += any(
            r.event is not None and r.event.ts + 5_000 < lo and lo - 30_000 <= r.write_ms <= lo for r in incident.raw
        )
    wanted = [
        *diff.STATUSES,
        "conflicting",
        "kafka time event",
        "kafka time write",
        "full history",
        "malformed in range",
        "conflicting copy first",
        "drops",
        "seq 1 dropped",
        "trap",
    ]
    assert not [w for w in wanted if not seen[w]], f"the generator never produced {[w for w in wanted if not seen[w]]}"
