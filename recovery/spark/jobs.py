"""Task functions run by Spark: one task per chunk (``mapInArrow``), one per key group (``applyInArrow``).

A task function returns :data:`~recovery.spark.payload.Row` tuples; rows travel as Arrow record batches
of :data:`~recovery.spark.payload.ROW_SCHEMA`. Task functions must be picklable (module-level functions, or
closures over picklable values): Spark ships them to the executors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from recovery.spark.payload import ROW_COLUMNS, ROW_SCHEMA, Row


def _arrow_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [("kind", pa.string()), ("partition", pa.int32()), ("bucket", pa.int32()), ("payload", pa.binary())]
    )


def _table(rows: list[Row]) -> Any:
    import pyarrow as pa

    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
    return pa.Table.from_arrays([pa.array(c) for c in columns], schema=_arrow_schema())


def map_tasks(session: Any, count: int, task: Callable[[int], Iterable[Row]]) -> Any:
    """A DataFrame of the rows ``task(i)`` returns for i in ``range(count)``, one Spark task per i."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            for i in batch.column(0).to_pylist():
                for row in task(int(i)):
                    yield from _table([row]).to_batches()

    return session.range(0, count, 1, max(1, count)).mapInArrow(run, ROW_SCHEMA)


def apply_groups(frame: Any, keys: list[str], groups: int, task: Callable[[int, int, list[Row]], Iterable[Row]]) -> Any:
    """A DataFrame of the rows ``task(partition, bucket, rows)`` returns for each group of ``frame`` by ``keys``.

    ``bucket`` is -1 when the groups are whole partitions; ``groups`` sets the shuffle partitions.
    """
    frame.sparkSession.conf.set("spark.sql.shuffle.partitions", str(max(1, groups)))

    def run(table: Any) -> Any:
        data = table.to_pydict()
        rows: list[Row] = [
            (kind, int(p), int(b), bytes(payload))
            for kind, p, b, payload in zip(*(data[c] for c in ROW_COLUMNS), strict=True)
        ]
        partition = rows[0][1] if rows else -1
        bucket = rows[0][2] if rows and "bucket" in keys else -1
        return _table(list(task(partition, bucket, rows)))

    return frame.groupBy(*keys).applyInArrow(run, ROW_SCHEMA)


def collect(frame: Any) -> list[Row]:
    """The rows of ``frame`` on the driver."""
    return [(r["kind"], int(r["partition"]), int(r["bucket"]), bytes(r["payload"])) for r in frame.collect()]
