"""Where records come from: a Kafka topic, or archive files (Parquet/NDJSON) holding RECORDS rows.

Every step after replay accepts either, so an incident older than the topic's retention can still be
recovered from its export (``recovery export``). Archive files hold the RECORDS columns of
:mod:`recovery.frames`; NDJSON rows carry ``key`` and ``value`` as UTF-8 strings.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import DataError
from recovery.frames import RECORDS

PARQUET_SUFFIXES = (".parquet", ".pq")
NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".json")
SIDECAR = "_replay.json"  # written next to exported parts: what was read, for provenance

_NDJSON_SCHEMA = pl.Schema(
    {"partition": pl.Int32, "offset": pl.Int64, "timestamp_ms": pl.Int64, "key": pl.String, "value": pl.String}
)


@dataclass(frozen=True)
class KafkaSource:
    """Records of ``topic`` on the cluster of ``settings`` (read_committed by default)."""

    topic: str
    settings: KafkaSettings
    isolation_level: str = "read_committed"

    def describe(self) -> str:
        return f"kafka topic {self.topic} on {self.settings.bootstrap_servers}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "kafka", "topic": self.topic, "bootstrap_servers": self.settings.bootstrap_servers}


@dataclass(frozen=True, init=False)
class FileSource:
    """Records from archive files: paths, directories (every Parquet/NDJSON file inside) or globs."""

    paths: tuple[str, ...]

    def __init__(self, paths: str | Path | Sequence[str | Path]) -> None:
        items = [paths] if isinstance(paths, str | Path) else list(paths)
        if not items:
            raise DataError("no archive files given", hint="pass Parquet/NDJSON files, a directory or a glob")
        object.__setattr__(self, "paths", tuple(str(p) for p in items))

    def describe(self) -> str:
        return f"files {', '.join(self.paths)}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "files", "paths": list(self.paths)}

    def files(self) -> list[Path]:
        """The matching files, sorted; :class:`DataError` when a path matches nothing."""
        found: list[Path] = []
        for item in self.paths:
            path = Path(item)
            if path.is_dir():
                matches = sorted(p for p in path.rglob("*") if p.suffix in PARQUET_SUFFIXES + NDJSON_SUFFIXES)
                # sidecars (_replay*.json) and temporary files (.name.tmp) are not records
                matches = [p for p in matches if not p.name.startswith(("_", "."))]
            elif any(ch in item for ch in "*?["):
                matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            else:
                matches = [path] if path.is_file() else []
            if not matches:
                raise DataError(
                    f"archive path {item!r} matches no Parquet/NDJSON file",
                    path=item,
                    hint="check the path, or export the range first with `recovery export`",
                )
            for match in matches:
                if match.suffix not in PARQUET_SUFFIXES + NDJSON_SUFFIXES:
                    raise DataError(
                        f"{str(match)!r} is not an archive file",
                        path=str(match),
                        hint=f"supported suffixes: {', '.join(PARQUET_SUFFIXES + NDJSON_SUFFIXES)}",
                    )
            found.extend(matches)
        return sorted(dict.fromkeys(found))

    def scan(self) -> pl.LazyFrame:
        """All records as a RECORDS lazy frame, one row per (partition, offset), in offset order."""
        frames = [_scan_file(p) for p in self.files()]
        combined = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
        # overlapping exports (or parts written twice in group mode) are harmless: a record is its offset
        return combined.unique(subset=["partition", "offset"], keep="first").sort("partition", "offset")

    def sidecars(self) -> list[dict[str, Any]]:
        """Replay descriptions found next to the files (topic, snapshot), for provenance."""
        found = []
        for directory in sorted({p.parent for p in self.files()}):
            sidecar = directory / SIDECAR
            if sidecar.is_file():
                try:
                    found.append(json.loads(sidecar.read_text()))
                except json.JSONDecodeError:
                    continue
        return found


Source = KafkaSource | FileSource


def _scan_file(path: Path) -> pl.LazyFrame:
    try:
        if path.suffix in PARQUET_SUFFIXES:
            lf = pl.scan_parquet(path)
            names = lf.collect_schema().names()
        else:
            lf = pl.scan_ndjson(path, schema=_NDJSON_SCHEMA)
            names = list(_NDJSON_SCHEMA)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read archive file {str(path)!r}: {exc}", path=str(path)) from None
    missing = [c for c in RECORDS if c not in names]
    if missing:
        raise DataError(
            f"archive file {str(path)!r} lacks column(s) {', '.join(missing)}",
            path=str(path),
            hint=f"archive files hold the replay columns {', '.join(RECORDS)} (write them with `recovery export`)",
        )
    return lf.select([pl.col(name).cast(dtype) for name, dtype in RECORDS.items()])
