"""Publish planning: chunk boundaries, the recorded plan, the resume point and the progress from audit records."""

from __future__ import annotations

import pytest

from recovery.errors import ConfigError, DataError
from recovery.fixes.chunks import (
    MAX_CHUNKS,
    Plan,
    committed_chunks,
    plan_chunks,
    plan_of,
    progress,
    recorded_plan,
    resume_point,
    unfinished,
)


def reference_chunks(total: int, size: int) -> list[tuple[int, int]]:
    """Chunks by walking the corrections one at a time (the plain reference)."""
    chunks: list[tuple[int, int]] = []
    current: list[int] = []
    for i in range(total):
        current.append(i)
        if len(current) == size:
            chunks.append((current[0], current[-1] + 1))
            current = []
    if current:
        chunks.append((current[0], current[-1] + 1))
    return chunks


@pytest.mark.parametrize(("total", "size"), [(0, 5), (1, 5), (5, 5), (6, 5), (2000, 300), (2000, 1), (7, 100)])
def test_chunks_cover_the_sorted_order_in_bounded_pieces(total: int, size: int) -> None:
    plan = plan_chunks(total, size)
    assert [plan.chunk(i) for i in range(plan.chunks)] == reference_chunks(total, size)
    assert plan.total == total


def test_chunk_sizes_that_cannot_work_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        plan_chunks(10, 0)
    with pytest.raises(ConfigError, match="use a chunk size of at least 2"):
        plan_chunks(MAX_CHUNKS + 1, 1)


def begin(boundaries: list[int] | None, digest: str = "d" * 64) -> dict[str, object]:
    record: dict[str, object] = {"event": "publish-begin", "digest": digest, "since": {"0": 0}}
    if boundaries is not None:
        record["boundaries"] = boundaries
    return record


def chunk(index: int) -> dict[str, object]:
    return {"event": "publish-chunk", "digest": "d" * 64, "chunk": index}


def test_the_first_recorded_plan_is_the_plan() -> None:
    history = [{"event": "approve"}, begin(None), begin([0, 3, 5]), begin([0, 2, 4, 5])]
    assert recorded_plan(history) == Plan((0, 3, 5))
    assert recorded_plan([{"event": "approve"}, begin(None)]) is None


@pytest.mark.parametrize("bad", [[1, 3], [0, 3, 3], [0, 5, 2], []])
def test_a_plan_that_is_not_increasing_from_zero_is_refused(bad: list[int]) -> None:
    with pytest.raises(DataError, match="not increasing from 0"):
        plan_of(begin(bad))


def test_a_rerun_resumes_at_the_first_uncommitted_chunk() -> None:
    plan = plan_chunks(2000, 300)  # 7 chunks
    assert resume_point(plan, set()) == 0
    assert resume_point(plan, committed_chunks([chunk(0), chunk(1), chunk(2)])) == 3
    assert resume_point(plan, set(range(7))) == 7
    # a chunk recorded twice (it cannot be, but reading it twice must not matter)
    assert resume_point(plan, committed_chunks([chunk(0), chunk(0)])) == 1


def test_a_gap_or_a_foreign_chunk_is_refused() -> None:
    plan = plan_chunks(2000, 300)
    with pytest.raises(DataError, match="chunk 1 is not committed but later"):
        resume_point(plan, {0, 2})
    with pytest.raises(DataError, match="of a plan of 7 chunks"):
        resume_point(plan, {0, 7})


def test_progress_from_audit_records() -> None:
    boundaries = [0, 300, 600, 900, 1000]
    assert progress([], 1000).state == "not-started"
    assert progress([begin(boundaries)], 1000).state == "not-started"
    partly = progress([begin(boundaries), chunk(0), chunk(1)], 1000)
    assert (partly.state, partly.chunks_committed, partly.chunks, partly.corrections_committed) == (
        "partly-published",
        2,
        4,
        600,
    )
    assert partly.partial and "PARTLY PUBLISHED: 2 of 4 chunks" in partly.line()
    assert "continues at chunk 2" in partly.line()
    unfinished = progress([begin(boundaries), *[chunk(i) for i in range(4)]], 1000)
    assert unfinished.state == "all-chunks-committed" and unfinished.corrections_committed == 1000
    done = progress([begin(boundaries), *[chunk(i) for i in range(4)], {"event": "publish"}], 1000)
    assert (done.state, done.partial, done.chunks) == ("published", False, 4)
    legacy = progress([begin(None), {"event": "publish"}], 1000)  # a one-transaction publish of old
    assert (legacy.state, legacy.chunks) == ("published", 1)


def test_unfinished_publishes_are_those_with_a_plan_and_no_publish_record() -> None:
    partly = [begin([0, 5, 10], "a" * 64), {"event": "publish-chunk", "digest": "a" * 64, "chunk": 0}]
    done = [begin([0, 10], "b" * 64), {"event": "publish-chunk", "digest": "b" * 64, "chunk": 0}]
    done.append({"event": "publish", "digest": "b" * 64})
    planned = [begin([0, 10], "c" * 64)]  # nothing committed yet: not partly published
    found = unfinished([*partly, *done, *planned, {"event": "approve", "digest": "d" * 64}])
    assert list(found) == ["a" * 64]
    assert (found["a" * 64].chunks_committed, found["a" * 64].corrections_committed) == (1, 5)
