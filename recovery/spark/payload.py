"""Polars frames and small Python objects as the binary payloads of Spark rows.

Every row a task returns has the columns of :data:`ROW_SCHEMA`: a ``kind``, the Kafka ``partition``, a key
``bucket`` (-1 when none) and a binary ``payload``. Frames travel as Arrow IPC (lz4), so Spark shuffles
bytes and never converts the toolkit's schemas; small results (counts, quarantine, the lookback) travel
pickled between the driver and tasks of the same installation.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable, Iterator
from typing import Any

import polars as pl

from recovery.frames import empty

ROW_SCHEMA = "kind string, partition int, bucket int, payload binary"
ROW_COLUMNS = ("kind", "partition", "bucket", "payload")
SLICE_ROWS = 50_000  # rows of a frame per payload: a few MB per Spark row, so buffers and cached batches stay small

Row = tuple[str, int, int, bytes]


def frame_bytes(frame: pl.DataFrame) -> bytes:
    """``frame`` as Arrow IPC bytes (lz4)."""
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="lz4")
    return buffer.getvalue()


def frame_of(payloads: Iterable[bytes], schema: pl.Schema) -> pl.DataFrame:
    """The frames of ``payloads`` concatenated (an empty frame of ``schema`` when there are none)."""
    frames = [pl.read_ipc(io.BytesIO(p)) for p in payloads]
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="vertical_relaxed") if frames else empty(schema)


def frame_rows(kind: str, partition: int, bucket: int, frame: pl.DataFrame) -> Iterator[Row]:
    """Rows carrying ``frame`` in slices of at most :data:`SLICE_ROWS` rows."""
    for start in range(0, frame.height, SLICE_ROWS):
        yield kind, partition, bucket, frame_bytes(frame.slice(start, SLICE_ROWS))


def object_row(kind: str, partition: int, value: Any) -> Row:
    """A row carrying a pickled Python object (results of the same installation's tasks)."""
    return kind, partition, -1, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def object_of(payload: bytes) -> Any:
    """The object of :func:`object_row`'s payload."""
    return pickle.loads(payload)
