"""Fix sets: corrections from a comparison, digest, atomic write, tamper detection, approval checks."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.errors import ApprovalError, ConfigError, DataError
from recovery.fixes.approval import Approval, check_approved, load_approval, new_approval, write_approval
from recovery.fixes.fixset import (
    DIGEST_FILE,
    MANIFEST_FILE,
    FixSet,
    apply_corrections,
    build_fixset,
    corrections_from,
    load_fixset,
    write_fixset,
)
from recovery.frames import COMPARISON, CORRECTIONS, OUTPUTS, RESULTS
from recovery.spec import MetricSpec, PipelineSpec

SPEC = PipelineSpec(metrics=(MetricSpec("sma_3", "sma", n=3),))
T0 = 1_767_225_600_000

COMPARISON_ROWS = [
    ("A", "sma_3", 1, T0 + 1, 10.0, 10.0, 1, False, "ok"),
    ("A", "sma_3", 2, T0 + 2, None, 11.0, 0, False, "missing"),
    ("A", "sma_3", 3, T0 + 3, 99.0, 12.0, 1, False, "wrong"),
    ("A", "sma_3", 4, T0 + 4, 13.0, 13.0, 2, False, "duplicate"),
    ("A", "sma_3", 5, T0 + 5, 14.0, 14.0, 2, True, "duplicate"),
    ("C", "sma_3", 1, T0 + 7, 3.0, None, 1, False, "extra"),
]


def comparison(rows: list[tuple] = COMPARISON_ROWS) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=COMPARISON, orient="row")


def fixset(rows: list[tuple] = COMPARISON_ROWS, **overrides: object) -> FixSet:
    options: dict = {
        "spec": SPEC,
        "incident": "INC-1",
        "from_ms": T0,
        "to_ms": T0 + 60_000,
        "parameters": {"abs_tol": 1e-9, "rel_tol": 1e-9},
        "sources": {"raw": {"0": [0, 10, 10]}, "outputs": {"0": [0, 7, 7]}},
    }
    options.update(overrides)
    return build_fixset(comparison(rows), **options)


def test_corrections_upsert_missing_wrong_conflicting_and_retract_extra() -> None:
    expected = pl.DataFrame(
        [
            ("A", "sma_3", 2, T0 + 2, "upsert", 11.0, "missing"),
            ("A", "sma_3", 3, T0 + 3, "upsert", 12.0, "wrong"),
            ("A", "sma_3", 5, T0 + 5, "upsert", 14.0, "duplicate"),
            ("C", "sma_3", 1, T0 + 7, "retract", None, "extra"),
        ],
        schema=CORRECTIONS,
        orient="row",
    )
    assert_frame_equal(corrections_from(comparison()), expected)


def test_digest_is_deterministic_and_covers_corrections_and_manifest() -> None:
    first, second = fixset(), fixset()
    assert first.digest == second.digest
    assert len(first.digest) == 64
    assert first.provenance["created_at"]  # wall clock lives outside the digest
    assert fixset(incident="INC-2").digest != first.digest
    assert fixset(parameters={"abs_tol": 1e-6, "rel_tol": 1e-9}).digest != first.digest
    changed = [*COMPARISON_ROWS[:-1], ("C", "sma_3", 1, T0 + 7, 3.0, None, 1, False, "ok")]
    assert fixset(changed).digest != first.digest
    assert first.content["counts"] == {"ok": 1, "missing": 1, "wrong": 1, "duplicate": 2, "extra": 1, "conflicting": 1}
    assert first.content["corrections"] == {"upsert": 3, "retract": 1, "total": 4}


def test_written_fix_set_loads_back_identically(tmp_path: Path) -> None:
    original = fixset()
    path = write_fixset(original, tmp_path / "fx", review={"comparison": comparison()})
    assert sorted(p.name for p in path.iterdir()) == ["corrections.parquet", "digest.sha256", "manifest.json", "review"]
    loaded = load_fixset(path)
    assert loaded.digest == original.digest
    assert loaded.content == original.content
    assert_frame_equal(loaded.corrections, original.corrections)
    assert (path / DIGEST_FILE).read_text().strip() == original.digest


def test_empty_comparison_gives_an_empty_fix_set(tmp_path: Path) -> None:
    empty = fixset([])
    assert_frame_equal(empty.corrections, pl.DataFrame(schema=CORRECTIONS))
    assert_frame_equal(load_fixset(write_fixset(empty, tmp_path / "fx")).corrections, pl.DataFrame(schema=CORRECTIONS))


def test_edited_corrections_are_refused(tmp_path: Path) -> None:
    path = write_fixset(fixset(), tmp_path / "fx")
    edited = pl.read_parquet(path / "corrections.parquet").with_columns(pl.col("value") * 2)
    edited.write_parquet(path / "corrections.parquet")
    with pytest.raises(DataError, match="does not match its digest"):
        load_fixset(path)


def test_edited_manifest_is_refused(tmp_path: Path) -> None:
    path = write_fixset(fixset(), tmp_path / "fx")
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["content"]["incident"] = "INC-other"
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="changed after it was written"):
        load_fixset(path)


def test_a_digest_file_that_disagrees_is_refused(tmp_path: Path) -> None:
    path = write_fixset(fixset(), tmp_path / "fx")
    (path / DIGEST_FILE).write_text("0" * 64 + "\n")
    with pytest.raises(DataError, match="does not match its digest"):
        load_fixset(path)


def test_existing_directory_is_not_overwritten(tmp_path: Path) -> None:
    path = write_fixset(fixset(), tmp_path / "fx")
    with pytest.raises(DataError, match="already exists"):
        write_fixset(fixset(incident="INC-2"), path)
    assert load_fixset(path).incident == "INC-1"
    write_fixset(fixset(incident="INC-2"), path, overwrite=True)
    assert load_fixset(path).incident == "INC-2"
    assert [p.name for p in tmp_path.iterdir()] == ["fx"]  # no temporary directory left behind


def test_not_a_fix_set_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a fix set"):
        load_fixset(tmp_path)


def test_bad_incident_is_refused() -> None:
    with pytest.raises(ConfigError, match="incident id"):
        fixset(incident="../x")


def test_approval_must_match_the_digest(tmp_path: Path) -> None:
    path = write_fixset(fixset(), tmp_path / "fx")
    loaded = load_fixset(path)
    with pytest.raises(ApprovalError, match="is not approved"):
        check_approved(loaded, load_approval(path))
    approval = new_approval(loaded, "alice")
    write_approval(path, approval)
    assert check_approved(loaded, load_approval(path)) == approval
    assert check_approved(loaded, approval, approved_digest=loaded.digest).reviewer == "alice"
    with pytest.raises(ApprovalError, match="is not the fix set's"):
        check_approved(loaded, approval, approved_digest="f" * 64)
    other = Approval("e" * 64, "alice", approval.approved_at, "INC-1")
    with pytest.raises(ApprovalError, match="changed since it was approved"):
        check_approved(loaded, other)
    with pytest.raises(ConfigError, match="reviewer must be a non-empty name"):
        new_approval(loaded, "  ")


def test_a_broken_approval_file_is_refused(tmp_path: Path) -> None:
    path = write_fixset(fixset(), tmp_path / "fx")
    (path / "approval.json").write_text('{"digest": "x"}')
    with pytest.raises(ApprovalError, match="not a valid approval"):
        load_approval(path)


def test_applying_corrections_to_the_originals_gives_truth() -> None:
    originals = pl.DataFrame(
        [
            ("A", "sma_3", 1, T0 + 1, 10.0, 0, 0, T0),
            ("A", "sma_3", 3, T0 + 3, 99.0, 0, 1, T0),
            ("A", "sma_3", 4, T0 + 4, 13.0, 0, 2, T0),
            ("A", "sma_3", 4, T0 + 4, 13.0, 0, 3, T0),
            ("A", "sma_3", 5, T0 + 5, 1.0, 0, 4, T0),
            ("A", "sma_3", 5, T0 + 5, 14.0, 0, 5, T0),
            ("C", "sma_3", 1, T0 + 7, 3.0, 0, 6, T0),
        ],
        schema=OUTPUTS,
        orient="row",
    )
    truth = pl.DataFrame(
        [(r[0], r[1], r[2], r[3], r[5]) for r in COMPARISON_ROWS if r[8] != "extra"], schema=RESULTS, orient="row"
    )
    assert_frame_equal(apply_corrections(originals, fixset().corrections), truth)
    assert_frame_equal(
        apply_corrections(pl.DataFrame(schema=RESULTS), pl.DataFrame(schema=CORRECTIONS)), pl.DataFrame(schema=RESULTS)
    )


def test_digest_fed_in_slices_is_the_digest_of_one_canonical_json_of_all_rows() -> None:
    """Regression: hashing a large fix set's rows slice by slice must not change its digest."""
    import hashlib
    import random

    from recovery.fixes import fixset as fixes

    n = 2 * fixes.DIGEST_SLICE_ROWS + 3
    rnd = random.Random(3)
    corrections = pl.DataFrame(
        {
            "key": [f"K{rnd.randrange(50)}" for _ in range(n)],
            "metric": ["sma_5"] * n,
            "window": list(range(n)),
            "time_ms": list(range(n)),
            "action": ["upsert"] * n,
            "value": [None if i % 11 == 0 else rnd.random() * 100 for i in range(n)],
            "reason": ["wrong"] * n,
        },
        schema=CORRECTIONS,
    )
    content = {"incident": "INC-1", "note": "é"}
    h = hashlib.sha256()
    h.update(fixes.FORMAT.encode() + b"\n")
    h.update(fixes._canonical_json(content) + b"\n")
    h.update(fixes._canonical_json(corrections.sort("key", "metric", "window").rows()))
    assert fixes.fixset_digest(corrections, content) == h.hexdigest()
