"""Read-back of published corrections (read_committed): what a publish verifies before its audit record.

:func:`verify` checks that every correction of a fix set is committed exactly once with its content. The
records are first compared byte for byte with the fix set's own encoding (:func:`encoded_records`): equal
records hold equal content, and this needs no decoding. Only when they differ are the records decoded and
compared field by field, to say what differs (missing, other content, committed more than once, unexpected).
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import DataError
from recovery.fixes.encoding import encoded_records, layout_of, record_key
from recovery.fixes.fixset import FixSet
from recovery.frames import CORRECTIONS, RECORDS, conform
from recovery.kafka.client import DEFAULT_CLIENT
from recovery.kafka.small import read_topic
from recovery.records.layout_outputs import OutputLayout, decode_layout_corrections
from recovery.source import KafkaSource

# A correction record read back from the corrections topic.
PUBLISHED = pl.Schema(
    [
        *CORRECTIONS.items(),
        ("digest", pl.String),
        ("record_key", pl.String),
        ("partition", pl.Int32),
        ("offset", pl.Int64),
    ]
)
_VALUE = pl.Struct(pl.Schema([*CORRECTIONS.items(), ("digest", pl.String)]))


class VerificationError(DataError):
    """The corrections read back from Kafka differ from the fix set."""


def decode_corrections(records: pl.DataFrame) -> pl.DataFrame:
    """PUBLISHED rows from records of the corrections topic (tombstones and foreign records are skipped)."""
    frame = conform(records, RECORDS).filter(pl.col("value").is_not_null())
    if frame.height == 0:
        return pl.DataFrame(schema=PUBLISHED)
    try:
        decoded = frame.with_columns(pl.col("value").cast(pl.String).str.json_decode(_VALUE).alias("_v"))
    except pl.exceptions.PolarsError:
        decoded = frame.with_columns(
            pl.Series("_v", [_decode_one(v) for v in frame.get_column("value").to_list()], dtype=_VALUE)
        )
    out = decoded.filter(pl.col("_v").is_not_null()).select(
        pl.col("_v").struct.unnest(), pl.col("key").cast(pl.String).alias("record_key"), "partition", "offset"
    )
    return conform(out.drop_nulls(["key", "metric", "window", "action"]), PUBLISHED)


def _decode_one(value: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or "digest" not in data:
        return None
    return {name: data.get(name) for name in (*CORRECTIONS.names(), "digest")}


def read_corrections(
    settings: KafkaSettings,
    topic: str,
    *,
    digest: str | None = None,
    since: dict[int, int] | None = None,
    client: str = DEFAULT_CLIENT,
    layout: OutputLayout | None = None,
) -> pl.DataFrame:
    """Committed correction records of ``topic`` (read_committed, bounded), optionally of one digest.

    With ``layout``, the records are the outputs' own (see :func:`encode_corrections`).

    ``since`` (partition -> offset) skips what came before: a publish records the end offsets before it
    sends, and only records after them can be its own.
    """
    records = _committed(settings, topic, since, client)
    if layout is not None:  # the outputs' own records carry no digest: ``since`` tells which are this publish's
        found = decode_layout_corrections(layout, records)
        return found.with_columns(pl.lit(digest, dtype=pl.String).alias("digest")).select(PUBLISHED.names())
    return _of_digest(records, digest)


def _committed(settings: KafkaSettings, topic: str, since: dict[int, int] | None, client: str) -> pl.DataFrame:
    """RECORDS of ``topic`` committed after ``since`` (read_committed, bounded by the end offsets seen now)."""
    source = KafkaSource(topic, settings, isolation_level="read_committed")
    offsets = None if since is None else {int(p): (int(o), None) for p, o in since.items()}
    return read_topic(source, offsets=offsets, client=client)


def _of_digest(records: pl.DataFrame, digest: str | None) -> pl.DataFrame:
    """PUBLISHED corrections decoded from ``records`` (of one digest, when given)."""
    if digest is not None:
        records = records.filter(pl.col("value").bin.contains(digest.encode()))
    published = decode_corrections(records)
    return published.filter(pl.col("digest") == digest) if digest is not None else published


def _as_encoded(records: pl.DataFrame, fixset: FixSet) -> bool:
    """Whether the records holding the fix set's digest are, byte for byte, its corrections once each."""
    mine = records.filter(pl.col("value").bin.contains(fixset.digest.encode()))
    if mine.height != fixset.corrections.height:
        return False
    got = mine.select(pl.col("key").alias("k"), pl.col("value").alias("v")).sort("k", "v")
    return got.equals(encoded_records(fixset.corrections, fixset.digest).select("k", "v").sort("k", "v"))


def _offsets(records: pl.DataFrame) -> dict[str, list[int]]:
    """Per partition ``[first offset, last offset, records]``."""
    offsets = records.group_by("partition").agg(
        pl.col("offset").min().alias("first"), pl.col("offset").max().alias("last"), pl.len().alias("n")
    )
    return {str(p): [int(a), int(b), int(n)] for p, a, b, n in offsets.sort("partition").iter_rows()}


def verify(
    settings: KafkaSettings,
    topic: str,
    fixset: FixSet,
    *,
    since: dict[int, int] | None = None,
    client: str = DEFAULT_CLIENT,
) -> dict[str, list[int]]:
    """Check that every correction of ``fixset`` is committed exactly once with its content.

    Returns per partition ``[first offset, last offset, records]``; :class:`VerificationError` otherwise.
    """
    layout = layout_of(fixset.spec)
    if layout is None:
        records = _committed(settings, topic, since, client)
        if _as_encoded(records, fixset):  # the same bytes as sent: the same content, each once
            return _offsets(records.filter(pl.col("value").bin.contains(fixset.digest.encode())))
        published = _of_digest(records, fixset.digest)  # decoded, to say what differs
    else:
        published = read_corrections(settings, topic, digest=fixset.digest, since=since, client=client, layout=layout)
    expected = conform(fixset.corrections, CORRECTIONS).with_columns(record_key().alias("_rk"))
    # the outputs' own layout carries neither the reason nor (for count windows) the event time
    checked = CORRECTIONS.names() if layout is None else ["key", "metric", "window", "action", "value"]
    copies = published.group_by("record_key").len()
    duplicated = copies.filter(pl.col("len") > 1).height
    joined = expected.join(
        published.unique(subset=["record_key"], keep="last").select(
            "record_key", *[pl.col(c).alias(f"_got_{c}") for c in checked]
        ),
        left_on="_rk",
        right_on="record_key",
        how="left",
    )
    missing = joined.filter(pl.col("_got_key").is_null()).height
    differs = pl.any_horizontal(*[pl.col(c).ne_missing(pl.col(f"_got_{c}")) for c in checked])
    changed = joined.filter(pl.col("_got_key").is_not_null() & differs).height
    unexpected = published.join(expected.select("_rk"), left_on="record_key", right_on="_rk", how="anti").height
    if missing or changed or duplicated or unexpected:
        raise VerificationError(
            f"read-back of {topic} for digest {fixset.digest[:12]}... differs from the fix set: "
            f"{missing} missing, {changed} with other content, {duplicated} committed more than once, "
            f"{unexpected} unexpected",
            hint="do not retry blindly: inspect the topic (a newer fix set may have compacted these keys)",
        )
    return _offsets(published)
