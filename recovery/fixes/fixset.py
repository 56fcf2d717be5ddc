"""Fix sets: the corrections to publish, a manifest saying where they come from, and a digest over both.

A fix set is a directory::

    corrections.parquet   CORRECTIONS rows (upserts for missing/wrong/conflicting, retractions for extra)
    manifest.json         {"digest", "content": what the digest covers, "provenance": what it does not}
    digest.sha256         the digest again, for `sha256sum`-style tooling and quick looks
    approval.json         written by `recovery approve`: reviewer, digest, time
    review/               comparison, quarantine, gaps: for reviewers, not part of the digest

The digest is SHA-256 over the canonical JSON of the manifest content and of the corrections sorted by
(key, metric, window). The content holds no wall-clock time and no source location, so two runs on the
same input (from Kafka or from its export) give the same digest. A fix set whose files no longer match
their digest is refused when loaded; a fix set is published only with an approval of its digest.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recovery import __version__
from recovery.errors import ConfigError, DataError
from recovery.frames import COMPARISON, CORRECTIONS, OUTPUTS, RESULTS, STATUSES, conform
from recovery.records.validate import require_columns
from recovery.spec import PipelineSpec
from recovery.timerange import format_ms, now_ms

FORMAT = "recovery.fixset/1"
CORRECTIONS_FILE = "corrections.parquet"
MANIFEST_FILE = "manifest.json"
DIGEST_FILE = "digest.sha256"
APPROVAL_FILE = "approval.json"
REVIEW_DIR = "review"
SORT_KEY = ("key", "metric", "window")
DIGEST_SLICE_ROWS = 50_000


def status_counts(comparison: pl.DataFrame) -> dict[str, int]:
    """Rows per status, every status present (zero when absent), plus ``conflicting`` duplicates."""
    found = dict(comparison.group_by("status").len().iter_rows()) if comparison.height else {}
    counts = {s: int(found.get(s, 0)) for s in STATUSES}
    counts["conflicting"] = int(comparison.filter(pl.col("status") == "duplicate").get_column("conflicting").sum())
    return counts


def corrections_from(comparison: pl.DataFrame) -> pl.DataFrame:
    """CORRECTIONS for a COMPARISON: upsert missing, wrong and conflicting duplicates; retract extras."""
    require_columns(comparison, COMPARISON, "COMPARISON")
    frame = conform(comparison, COMPARISON)
    status = pl.col("status")
    upsert = status.is_in(["missing", "wrong"]) | ((status == "duplicate") & pl.col("conflicting"))
    retract = status == "extra"
    chosen = frame.filter(upsert | retract).with_columns(
        pl.when(retract).then(pl.lit("retract")).otherwise(pl.lit("upsert")).alias("action"),
        pl.when(retract).then(pl.lit(None, dtype=pl.Float64)).otherwise(pl.col("corrected")).alias("value"),
        status.alias("reason"),
    )
    return conform(chosen, CORRECTIONS).sort(list(SORT_KEY))


def _canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def fixset_digest(corrections: pl.DataFrame, content: dict[str, Any]) -> str:
    """SHA-256 over the canonical manifest content and the corrections sorted by (key, metric, window)."""
    frame = conform(corrections, CORRECTIONS).sort(list(SORT_KEY))
    h = hashlib.sha256()
    h.update(FORMAT.encode() + b"\n")
    h.update(_canonical_json(content) + b"\n")
    # the canonical JSON list of all rows, fed in slices: "[" row "," row ... "]" is the same bytes as one
    # json.dumps of the whole list, without holding every row as Python objects at once
    h.update(b"[")
    try:
        for start in range(0, frame.height, DIGEST_SLICE_ROWS):
            rows = frame.slice(start, DIGEST_SLICE_ROWS).rows()
            if start:
                h.update(b",")
            h.update(_canonical_json(rows)[1:-1])
    except ValueError:
        raise DataError("a correction has a non-finite value", hint="values must be finite numbers or null") from None
    h.update(b"]")
    return h.hexdigest()


@dataclass(frozen=True)
class FixSet:
    """Corrections plus the digested manifest ``content``; ``provenance`` (times, sources) is not digested."""

    corrections: pl.DataFrame
    content: dict[str, Any]
    digest: str
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.content.get("counts", {}))

    @property
    def incident(self) -> str:
        return str(self.content.get("incident", ""))

    @property
    def spec(self) -> PipelineSpec:
        return PipelineSpec.from_dict(self.content["spec"])

    def manifest(self) -> dict[str, Any]:
        """What manifest.json holds."""
        return {"digest": self.digest, "content": self.content, "provenance": self.provenance}


def build_fixset(
    comparison: pl.DataFrame,
    *,
    spec: PipelineSpec,
    incident: str,
    from_ms: int,
    to_ms: int,
    parameters: dict[str, Any],
    sources: dict[str, Any],
    quality: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> FixSet:
    """A fix set for ``comparison``: its corrections and a manifest (digested content + provenance).

    ``sources`` holds data-derived facts only (per partition: first offset, end offset, records), so the
    digest is the same whether the records came from Kafka or from an export.
    """
    return fixset_from(
        corrections_from(comparison),
        status_counts(comparison),
        spec=spec,
        incident=incident,
        from_ms=from_ms,
        to_ms=to_ms,
        parameters=parameters,
        sources=sources,
        quality=quality,
        provenance=provenance,
    )


def fixset_from(
    corrections: pl.DataFrame,
    counts: dict[str, int],
    *,
    spec: PipelineSpec,
    incident: str,
    from_ms: int,
    to_ms: int,
    parameters: dict[str, Any],
    sources: dict[str, Any],
    quality: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> FixSet:
    """A fix set from its corrections and the comparison's status counts (a comparison made in parts)."""
    if not incident or "/" in incident or incident.startswith("."):
        raise ConfigError(f"incident id must be a plain non-empty name, got {incident!r}")
    corrections = conform(corrections, CORRECTIONS).sort(list(SORT_KEY))
    actions = dict(corrections.group_by("action").len().iter_rows()) if corrections.height else {}
    content = {
        "format": FORMAT,
        "incident": incident,
        "range": {"from_ms": from_ms, "to_ms": to_ms, "from": format_ms(from_ms), "to": format_ms(to_ms)},
        "spec": spec.to_dict(),
        "spec_digest": spec.digest(),
        "parameters": parameters,
        "counts": dict(counts),
        "corrections": {
            "upsert": int(actions.get("upsert", 0)),
            "retract": int(actions.get("retract", 0)),
            "total": corrections.height,
        },
        "quality": quality or {},
        "sources": sources,
        "tool_version": __version__,
    }
    content = json.loads(_canonical_json(content))  # plain JSON types only: what is written is what is digested
    prov = {
        "created_at": format_ms(now_ms()),
        "created_by": f"{_user()}@{socket.gethostname()}",
        **(provenance or {}),
    }
    return FixSet(corrections, content, fixset_digest(corrections, content), prov)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def write_fixset(
    fixset: FixSet,
    directory: str | Path,
    *,
    review: Mapping[str, pl.DataFrame | pl.LazyFrame] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``fixset`` to ``directory`` atomically (a temporary directory renamed into place).

    An existing non-empty directory is refused unless ``overwrite``; ``review`` frames go to ``review/``.
    """
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise DataError(
            f"{str(target)!r} already exists and is not empty",
            path=str(target),
            hint="choose another --out directory (a fix set is never overwritten silently)",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fixset.corrections.write_parquet(tmp / CORRECTIONS_FILE, compression="zstd")
        (tmp / MANIFEST_FILE).write_text(json.dumps(fixset.manifest(), indent=2, sort_keys=True) + "\n")
        (tmp / DIGEST_FILE).write_text(f"{fixset.digest}\n")
        if review:
            (tmp / REVIEW_DIR).mkdir()
            for name, frame in review.items():
                if isinstance(frame, pl.LazyFrame):  # parts too big for memory: streamed into one file
                    frame.sink_parquet(tmp / REVIEW_DIR / f"{name}.parquet", compression="zstd")
                else:
                    frame.write_parquet(tmp / REVIEW_DIR / f"{name}.parquet", compression="zstd")
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_fixset(directory: str | Path) -> FixSet:
    """Read a fix set and check it against its digest (a changed fix set is refused)."""
    path = Path(directory)
    manifest_path, corrections_path = path / MANIFEST_FILE, path / CORRECTIONS_FILE
    if not manifest_path.is_file() or not corrections_path.is_file():
        raise DataError(
            f"{str(path)!r} is not a fix set (needs {MANIFEST_FILE} and {CORRECTIONS_FILE})",
            path=str(path),
            hint="create one with `recovery recover ... --out DIR`",
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        corrections = pl.read_parquet(corrections_path)
    except (json.JSONDecodeError, pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"fix set {str(path)!r} is unreadable: {exc}", path=str(path)) from None
    if not isinstance(manifest, dict) or not {"digest", "content"} <= set(manifest):
        raise DataError(f"{str(manifest_path)!r} is not a fix set manifest", path=str(manifest_path))
    if dict(corrections.schema) != dict(CORRECTIONS):
        raise DataError(
            f"{str(corrections_path)!r} does not have the corrections columns",
            path=str(corrections_path),
            hint="the fix set was edited: rebuild it with `recovery recover`",
        )
    content = manifest["content"]
    actual = fixset_digest(corrections, content)
    recorded = {manifest["digest"]}
    digest_path = path / DIGEST_FILE
    if digest_path.is_file():
        recorded.add(digest_path.read_text().split()[0] if digest_path.read_text().split() else "")
    if recorded != {actual}:
        raise DataError(
            f"fix set {str(path)!r} does not match its digest (recorded {sorted(recorded)[0][:12]}..., "
            f"content {actual[:12]}...): it was changed after it was written",
            path=str(path),
            hint="rebuild it with `recovery recover` and have the new digest approved",
        )
    return FixSet(corrections, content, actual, manifest.get("provenance", {}), path)


# ----------------------------------------------------------------------------------------------- approval


def latest_outputs(originals: pl.DataFrame) -> pl.DataFrame:
    """RESULTS holding, per (key, metric, window), the last published copy (by partition, offset)."""
    frame = conform(originals, OUTPUTS).sort("partition", "offset")
    return conform(frame.unique(subset=list(SORT_KEY), keep="last", maintain_order=True), RESULTS)


def apply_corrections(originals: pl.DataFrame, corrections: pl.DataFrame) -> pl.DataFrame:
    """What downstream holds after applying ``corrections`` to ``originals`` (OUTPUTS or RESULTS).

    The last copy of each original wins; an upsert replaces or adds a result; a retraction removes it.
    Sorted by key, metric, window.
    """
    if set(OUTPUTS) <= set(originals.columns):
        current = latest_outputs(originals)
    else:
        current = conform(originals, RESULTS).unique(subset=list(SORT_KEY), keep="last", maintain_order=True)
    fixes = conform(corrections, CORRECTIONS)
    if fixes.height == 0:
        return current.sort(list(SORT_KEY))
    key = list(SORT_KEY)
    kept = current.join(fixes.select(key), on=key, how="anti")
    upserts = fixes.filter(pl.col("action") == "upsert").select(*key, "time_ms", "value")
    return conform(pl.concat([kept, conform(upserts, RESULTS)]), RESULTS).sort(key)
