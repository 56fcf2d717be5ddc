"""Pins the fix set of two fixed seeded incidents: a refactoring must not change a single digest or count.

The values were recorded from the engine as it stood when the differential harness (test_differential.py)
agreed with the plain reference on every engine path; the harness checks what is right, this test checks
that nothing moves. A deliberate change of results (or of the manifest) updates them, with the reason in the
commit message.
"""

from __future__ import annotations

import pytest

from . import differential as diff

CASES = {
    "sub-range": (
        diff.Params(seed=20261201, keys=8, partitions=3, late_pct=20, trap_pct=30, length_ms=30 * diff.MINUTE),
        "884e57c0bd8c469f3219e2c581dcfb3e2fd9fcd5e324ee4eb1c832ba7ee90c39",
        {"ok": 14, "missing": 5, "wrong": 2, "duplicate": 1, "extra": 1, "conflicting": 0},
        (3, 11, 11, 8),
    ),
    "full-history": (
        diff.Params(
            seed=20261201, keys=8, partitions=3, late_pct=20, trap_pct=30, length_ms=30 * diff.MINUTE, full_history=True
        ),
        "662b12a3a674b5e1b16aca5e839795e5150c54f0362835f48f73389853502081",
        {"ok": 164, "missing": 24, "wrong": 27, "duplicate": 10, "extra": 4, "conflicting": 3},
        (13, 11, 18, 58),
    ),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", [diff.ENGINE_PATHS[0], diff.ENGINE_PATHS[-1]], ids=lambda p: p.name)
@pytest.mark.parametrize("case", list(CASES))
def test_fixset_of_a_seeded_incident_is_unchanged(case: str, path: diff.EnginePath) -> None:
    params, digest, counts, figures = CASES[case]
    report = diff.recover_files(diff.generate(params), path)
    quality = report.fixset.content["quality"]
    assert report.summary.counts == counts
    found = (quality["quarantined"], quality["duplicates"], quality["lost_events"], report.fixset.corrections.height)
    assert found == figures
    assert report.fixset.digest == digest
