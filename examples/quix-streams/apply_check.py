"""Downstream's side: apply corrections written in the app's own output layout to the faulty run's outputs.

An independent consumer (no toolkit code): it builds the table downstream keeps from the faulty output topic
(per device, record kind and window, the last record), applies each correction record (a record carrying
one corrected metric; ``retracted = true`` withdraws that metric, and a row left without metrics goes), and
compares the rows in range with the clean run's table.
"""

from __future__ import annotations

from typing import Any

from oracle import GAP_MS, METRIC_FIELDS, Published, downstream, ms, row_id, same


def apply(table: dict[tuple[str, str, int], dict[str, Any]], corrections: list[Published]) -> None:
    """Apply correction records, in order, to a downstream table (in place)."""
    for rec in sorted(corrections, key=lambda r: (r.partition, r.offset)):
        if rec.value is None:
            raise ValueError(f"a tombstone at offset {rec.offset} names no window; the layout retracts with a flag")
        rid = row_id(rec.value)
        row = dict(table.get(rid, {}))
        fields = [f for f in METRIC_FIELDS.values() if f in rec.value]
        if rec.value.get("retracted"):
            for f in fields:
                row.pop(f, None)
            if any(f in row for f in METRIC_FIELDS.values()):
                table[rid] = row
            else:
                table.pop(rid, None)
            continue
        for name, part in rec.value.items():
            row[name] = part  # device, session or at, and the corrected metric
        table[rid] = row


def in_range(rid: tuple[str, str, int], row: dict[str, Any], from_ms: int, to_ms: int) -> bool:
    if rid[1] == "moving":
        return from_ms <= rid[2] < to_ms
    return rid[2] >= from_ms and ms(row["session"]["end"]) - 1 + GAP_MS < to_ms


def equal(a: Any, b: Any) -> bool:
    """Equal JSON values, numbers within the comparison tolerance (9 and 9.0 are equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return same(float(a), float(b))
    return bool(a == b)


def check(
    faulty: list[Published], clean: list[Published], corrections: list[Published], from_ms: int, to_ms: int
) -> tuple[int, list[str]]:
    """(rows compared, differences) between the corrected faulty table and the clean run's, in range."""
    table = downstream(faulty)
    apply(table, corrections)
    truth = downstream(clean)
    mine = {rid: row for rid, row in table.items() if in_range(rid, row, from_ms, to_ms)}
    theirs = {rid: row for rid, row in truth.items() if in_range(rid, row, from_ms, to_ms)}
    diffs = [f"only after correction: {rid}" for rid in sorted(set(mine) - set(theirs))]
    diffs += [f"only in the clean run: {rid}" for rid in sorted(set(theirs) - set(mine))]
    diffs += [
        f"differs: {rid}: {mine[rid]} != {theirs[rid]}"
        for rid in sorted(set(mine) & set(theirs))
        if not equal(mine[rid], theirs[rid])
    ]
    return len(theirs), diffs
