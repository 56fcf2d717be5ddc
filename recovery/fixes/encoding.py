"""How corrections are written to the corrections topic: record keys, values and partitions.

Correction records: key ``"{key}|{metric}|{window}"`` (UTF-8), value ``{"key", "metric", "window", "time_ms",
"action", "value", "reason", "digest"}`` (JSON), or with ``[outputs] corrections = "layout"`` the outputs' own
record. A correction goes to the partition the default partitioner gives its result key (the symbol).
"""

from __future__ import annotations

import polars as pl
from kafka.partitioner.default import murmur2

from recovery.frames import CORRECTIONS, conform
from recovery.records.layout_outputs import OutputLayout
from recovery.spec import PipelineSpec


def record_key() -> pl.Expr:
    """The record key of a correction: ``key|metric|window``."""
    return pl.concat_str([pl.col("key"), pl.col("metric"), pl.col("window").cast(pl.String)], separator="|")


def partition_of(key: str, partitions: int) -> int:
    """The default partitioner's choice for a result key (Java-compatible murmur2)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def sorted_corrections(corrections: pl.DataFrame) -> pl.DataFrame:
    """The corrections in the fix set's publish order: by key, metric, window (the plan's order)."""
    return conform(corrections, CORRECTIONS).sort("key", "metric", "window", maintain_order=True)


def layout_of(spec: PipelineSpec) -> OutputLayout | None:
    """The outputs' own layout when corrections are written in it (``[outputs] corrections = "layout"``)."""
    if spec.outputs.legacy or spec.outputs.corrections != "layout":
        return None
    return OutputLayout(spec)


def encode_corrections(
    corrections: pl.DataFrame, digest: str, partitions: int = 1, layout: OutputLayout | None = None
) -> tuple[list[bytes], list[bytes | None], list[int]]:
    """Record keys, values and partitions of the corrections, sorted by key, metric, window.

    The record key is ``key|metric|window`` (the compacted topic keeps the latest correction of each result).
    Values are the toolkit's correction record (JSON with the digest, built in bulk), or, with ``layout``, the
    outputs' own record (a retraction as a tombstone or a flagged record, as the layout says).
    """
    frame = sorted_corrections(corrections)
    encoded = encoded_records(frame, digest, partitions)
    values: list[bytes | None] = (
        encoded.get_column("v").to_list() if layout is None else [v for _, v in layout.encode(frame)]
    )
    return encoded.get_column("k").to_list(), values, encoded.get_column("p").to_list()


def encoded_records(corrections: pl.DataFrame, digest: str, partitions: int = 1) -> pl.DataFrame:
    """The toolkit's correction records in the corrections' order: ``k`` (record key) and ``v`` (value) as
    bytes, ``p`` the partition."""
    frame = conform(corrections, CORRECTIONS)
    keys = frame.get_column("key").unique()
    home = pl.Series([partition_of(k, partitions) for k in keys.to_list()], dtype=pl.Int64)
    value = pl.struct([*CORRECTIONS.names(), pl.lit(digest).alias("digest")]).struct.json_encode()
    return frame.select(
        record_key().cast(pl.Binary).alias("k"),
        value.cast(pl.Binary).alias("v"),
        pl.col("key").replace_strict(keys, home, return_dtype=pl.Int64).alias("p"),
    )
