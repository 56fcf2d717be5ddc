"""Avro record values in the Confluent wire format: decode in bulk, encode, with schemas by id.

Wire format: magic byte ``0``, the writer schema's id as 4 bytes big-endian, then the Avro binary
encoding of one datum (no container file, no sync markers). Schemas come from a :class:`SchemaSource`:

- :class:`LocalSchemas`: ``.avsc`` files. ``{schema_id: path}`` maps each id to its writer schema; a single
  ``reader`` file alone is used as the writer schema of every id (a topic whose schema never changed).
  With both, records are read with Avro schema resolution from their writer schema into the reader's shape.
- :class:`RegistrySchemas`: a Schema Registry URL (``GET /schemas/ids/{id}``, cached; see
  :mod:`recovery.records.registry`). A registry that is down raises :class:`recovery.errors.RegistryError`.

Logical types decode to what the rest of the toolkit computes with: every timestamp (``timestamp-millis``,
``-micros``, ``-nanos`` and their ``local-`` variants) to an ``int`` of epoch milliseconds (finer units
floor-divided), ``date`` to the epoch milliseconds of that day's UTC midnight, ``time-millis``/``-micros``
to milliseconds since midnight, ``decimal`` to ``float``, ``uuid`` to ``str``. :meth:`AvroCodec.encode`
takes the same forms, so a decoded record encodes back to the same bytes when no precision was lost.

Decoding never raises on bad bytes: a record that cannot be decoded gets a reason of the form
``"<category>: <detail>"`` like :mod:`recovery.records.events`, with the categories in
:data:`AVRO_REASON_CATEGORIES`.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import fastavro

from recovery.errors import ConfigError
from recovery.records.reasons import EMPTY, NOT_OBJECT
from recovery.records.registry import RegistryClient

MAGIC = 0
HEADER_BYTES = 5

WRONG_MAGIC = "wrong magic byte"
UNKNOWN_SCHEMA = "unknown schema id"
BAD_SCHEMA = "unsupported schema"
BAD_AVRO = "bad avro"
AVRO_REASON_CATEGORIES: tuple[str, ...] = (EMPTY, WRONG_MAGIC, UNKNOWN_SCHEMA, BAD_SCHEMA, BAD_AVRO, NOT_OBJECT)

MS_PER_DAY = 86_400_000
# logical type -> (divisor from the stored unit to ms, or a negative multiplier) for integers
_TIME_SCALES: dict[str, int] = {
    "timestamp-millis": 1,
    "local-timestamp-millis": 1,
    "time-millis": 1,
    "timestamp-micros": 1000,
    "local-timestamp-micros": 1000,
    "time-micros": 1000,
    "timestamp-nanos": 1_000_000,
    "local-timestamp-nanos": 1_000_000,
    "date": -MS_PER_DAY,
}
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})

Fix = Callable[[Any], Any]


def wire_bytes(schema_id: int, payload: bytes) -> bytes:
    """``payload`` (Avro binary) framed in the Confluent wire format for ``schema_id``."""
    if not 0 <= schema_id < 2**32:
        raise ConfigError(f"schema id {schema_id} does not fit 4 bytes", hint="ids are 0 .. 2**32 - 1")
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big") + payload


def split_wire(value: bytes | None) -> tuple[int, int] | str:
    """(schema id, offset of the Avro payload) of a framed value, or why it is not one."""
    if not value:
        return f"{EMPTY}: no bytes" if value is not None else f"{EMPTY}: null value (tombstone)"
    if value[0] != MAGIC:
        return f"{WRONG_MAGIC}: first byte is {value[0]}, expected {MAGIC} (not the Confluent wire format)"
    if len(value) < HEADER_BYTES:
        return f"{BAD_AVRO}: {len(value)} bytes, shorter than the {HEADER_BYTES}-byte header"
    return int.from_bytes(value[1:HEADER_BYTES], "big"), HEADER_BYTES


class SchemaSource(Protocol):
    """Where writer schemas come from: the Avro schema (parsed JSON) of an id, or None if unknown."""

    def writer_schema(self, schema_id: int) -> Any | str | None:
        """The schema (JSON value), None for an unknown id, or a reason string for an unusable one."""
        ...

    def describe(self) -> str:
        """One line naming the source, for reports and errors."""
        ...


def load_avsc(path: str | Path) -> Any:
    """The JSON of an ``.avsc`` file, checked to parse as an Avro schema (ConfigError otherwise)."""
    try:
        schema = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(
            f"cannot read Avro schema {path}: {exc.strerror}", hint="give the path of an .avsc file"
        ) from None
    except ValueError as exc:
        raise ConfigError(
            f"Avro schema {path} is not JSON: {exc}", hint="an .avsc file holds one JSON schema"
        ) from None
    try:
        fastavro.parse_schema(schema)
    except Exception as exc:
        raise ConfigError(f"Avro schema {path} does not parse: {exc}", hint="check it against the Avro spec") from None
    return schema


class LocalSchemas:
    """Writer schemas from ``.avsc`` files by id; with only ``reader`` set, that schema serves every id."""

    def __init__(self, schemas: Mapping[int, str | Path] | None = None, *, reader: str | Path | None = None) -> None:
        if not schemas and reader is None:
            raise ConfigError("no Avro schema given", hint="map schema ids to .avsc files, or give a reader schema")
        self._schemas = {int(i): load_avsc(p) for i, p in (schemas or {}).items()}
        self.reader = load_avsc(reader) if reader is not None else None
        self._paths = {int(i): str(p) for i, p in (schemas or {}).items()}
        self._reader_path = str(reader) if reader is not None else None

    def writer_schema(self, schema_id: int) -> Any | None:
        if schema_id in self._schemas:
            return self._schemas[schema_id]
        return self.reader if not self._schemas else None

    def describe(self) -> str:
        ids = ", ".join(f"{i}={p}" for i, p in sorted(self._paths.items()))
        reader = f"reader {self._reader_path}" if self._reader_path else ""
        return "Avro schemas " + "; ".join(x for x in (ids, reader) if x)


class RegistrySchemas:
    """Writer schemas from a Schema Registry (cached per id by the client)."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client

    def writer_schema(self, schema_id: int) -> Any | str | None:
        found = self.client.schema(schema_id)
        if found is None:
            return None
        if found.schema_type != "AVRO":
            return f"{BAD_SCHEMA}: schema id {schema_id} is {found.schema_type}, not AVRO"
        try:
            return json.loads(found.text)
        except ValueError:
            return f"{BAD_SCHEMA}: schema id {schema_id} is not JSON"

    def describe(self) -> str:
        return f"Schema Registry {self.client.url}"


def _plain(schema: Any) -> Any:
    """A copy of ``schema`` without the logical types this module converts itself (fastavro reads raw values)."""
    if isinstance(schema, list):
        return [_plain(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _plain(v) if k in ("type", "items", "values") else v for k, v in schema.items()}
    if "fields" in schema:
        out["fields"] = [{**f, "type": _plain(f["type"])} for f in schema["fields"]]
    if schema.get("logicalType") in _TIME_SCALES or schema.get("logicalType") == "uuid":
        del out["logicalType"]
    return out


def _full_name(schema: Mapping[str, Any], namespace: str) -> tuple[str, str]:
    name = str(schema["name"])
    if "." in name:
        return name, name.rsplit(".", 1)[0]
    ns = str(schema.get("namespace", namespace) or "")
    return (f"{ns}.{name}" if ns else name), ns


def _scale(logical: str, decode: bool) -> Fix | None:
    factor = _TIME_SCALES[logical]
    if factor == 1:
        return None
    if factor < 0:  # a count of days
        if decode:
            return lambda v: v * -factor
        return lambda v: v // -factor
    if decode:
        return lambda v: v // factor
    return lambda v: v * factor


def _decimal(schema: Mapping[str, Any], decode: bool) -> Fix:
    if decode:
        return float
    quantum = Decimal(1).scaleb(-int(schema.get("scale", 0)))
    return lambda v: v if isinstance(v, Decimal) else Decimal(repr(float(v))).quantize(quantum)


def _fixer(schema: Any, names: dict[str, Any], namespace: str, decode: bool) -> Fix | None:
    """A function turning fastavro's values of ``schema`` into this module's forms (or back), None if none needed."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return None
        target = names.get(schema) or names.get(f"{namespace}.{schema}")
        return (lambda v: target[0](v)) if target and target[0] is not None else None
    if isinstance(schema, list):
        return _union_fixer([_fixer(s, names, namespace, decode) for s in schema], schema, names, namespace)
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if logical in _TIME_SCALES and kind in ("int", "long"):
        return _scale(logical, decode)
    if logical == "decimal" and kind in ("bytes", "fixed"):
        return _decimal(schema, decode)
    if kind in ("record", "error"):
        full, ns = _full_name(schema, namespace)
        cell: list[Fix | None] = [None]
        names[full] = names[full.rsplit(".", 1)[-1]] = cell  # recursive references see the cell
        found = [(f["name"], _fixer(f["type"], names, ns, decode)) for f in schema["fields"]]
        fields: list[tuple[str, Fix]] = [(n, f) for n, f in found if f is not None]
        if fields:

            def fix_record(record: dict[str, Any]) -> dict[str, Any]:
                for name, fix in fields:
                    value = record.get(name)
                    if value is not None:
                        record[name] = fix(value)
                return record

            cell[0] = fix_record
        return cell[0]
    if kind in ("enum", "fixed"):
        full, _ = _full_name(schema, namespace)
        names[full] = names[full.rsplit(".", 1)[-1]] = [None]
        return None
    if kind in ("array", "map"):
        inner = _fixer(schema["items" if kind == "array" else "values"], names, namespace, decode)
        if inner is None:
            return None
        fix_inner: Fix = inner
        if kind == "array":
            return lambda v: [fix_inner(x) for x in v]
        return lambda v: {k: fix_inner(x) for k, x in v.items()}
    return _fixer(kind, names, namespace, decode) if kind is not None else None


def _union_fixer(fixes: list[Fix | None], branches: list[Any], names: dict[str, Any], namespace: str) -> Fix | None:
    """Apply the one branch fix matching the value's Python type (records/maps are dicts, arrays lists)."""
    by_type: dict[type, Fix] = {}
    for fix, branch in zip(fixes, branches, strict=True):
        if fix is None:
            continue
        kind = branch.get("type") if isinstance(branch, dict) else branch
        if isinstance(kind, dict):
            kind = kind.get("type")
        python = {"array": list, "int": int, "long": int, "bytes": Decimal, "fixed": Decimal}.get(str(kind), dict)
        if python in by_type:
            raise ConfigError(
                "an Avro union with two branches of one kind that both carry logical types is not supported",
                hint="give the branches distinct kinds, or read the field without its logical types",
            )
        by_type[python] = fix
    if not by_type:
        return None

    def fix_union(value: Any) -> Any:
        fix = by_type.get(type(value))
        if fix is None and isinstance(value, float) and Decimal in by_type:
            fix = by_type[Decimal]
        return fix(value) if fix else value

    return fix_union


class _Compiled:
    """One writer schema, ready to read and write: fastavro's parsed forms and the logical-type fixes."""

    __slots__ = ("writer", "reader", "decode_fix", "encode_fix")

    def __init__(self, writer: Any, reader: Any | None) -> None:
        self.writer = fastavro.parse_schema(_plain(writer))
        self.reader = fastavro.parse_schema(_plain(reader)) if reader is not None else None
        self.decode_fix = _fixer(reader if reader is not None else writer, {}, "", True)
        self.encode_fix = _fixer(writer, {}, "", False)


class AvroCodec:
    """Decodes and encodes Confluent-framed Avro values with the schemas of one source (built once per run)."""

    def __init__(self, source: SchemaSource, *, reader_schema: Any | None = None) -> None:
        self.source = source
        if reader_schema is None and isinstance(source, LocalSchemas) and source._schemas:
            reader_schema = source.reader
        self.reader_schema = reader_schema
        self._compiled: dict[int, _Compiled | str] = {}
        if reader_schema is not None:
            try:
                fastavro.parse_schema(_plain(reader_schema))
            except Exception as exc:
                raise ConfigError(f"the Avro reader schema does not parse: {exc}") from None

    @classmethod
    def from_files(
        cls, schemas: Mapping[int, str | Path] | None = None, *, reader: str | Path | None = None
    ) -> AvroCodec:
        """A codec over ``.avsc`` files: ids mapped to writer schemas, and/or one reader schema."""
        return cls(LocalSchemas(schemas, reader=reader))

    @classmethod
    def from_registry(
        cls,
        url: str,
        *,
        reader: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> AvroCodec:
        """A codec over a Schema Registry (credentials from the environment), optionally with a reader schema."""
        client = RegistryClient.from_env(url, env=env, timeout_s=timeout_s)
        return cls(RegistrySchemas(client), reader_schema=load_avsc(reader) if reader is not None else None)

    def describe(self) -> str:
        """One line naming the schema source."""
        return self.source.describe()

    def check(self) -> None:
        """Raise before a run when the schema source is unusable (a registry that does not answer)."""
        if isinstance(self.source, RegistrySchemas):
            self.source.client.check()

    def compiled(self, schema_id: int) -> _Compiled | str:
        """The compiled schema of an id, or the reason string for records carrying it (cached)."""
        found = self._compiled.get(schema_id)
        if found is not None:
            return found
        writer = self.source.writer_schema(schema_id)
        result: _Compiled | str
        if writer is None:
            result = f"{UNKNOWN_SCHEMA}: {schema_id} is not in {self.source.describe()}"
        elif isinstance(writer, str) and writer.startswith(BAD_SCHEMA):
            result = writer
        else:
            try:
                result = _Compiled(writer, self.reader_schema)
            except ConfigError:
                raise
            except Exception as exc:
                result = f"{BAD_SCHEMA}: schema id {schema_id} does not parse: {exc}"
        self._compiled[schema_id] = result
        return result

    def decode(self, value: bytes | None) -> dict[str, Any] | str:
        """One value as a dict, or the reason it is malformed."""
        return self.decode_many([value])[0]

    def decode_many(self, values: Sequence[bytes | None]) -> list[dict[str, Any] | str]:
        """Each value as a dict, or a reason string ``"<category>: <detail>"``; raises only if the source fails."""
        out: list[dict[str, Any] | str] = []
        append = out.append
        reader = fastavro.schemaless_reader
        compiled = self._compiled
        for value in values:
            if not value or value[0] != MAGIC or len(value) < HEADER_BYTES:
                split = split_wire(value)
                assert isinstance(split, str)
                append(split)
                continue
            schema_id = int.from_bytes(value[1:HEADER_BYTES], "big")
            schema = compiled.get(schema_id) or self.compiled(schema_id)
            if isinstance(schema, str):
                append(schema)
                continue
            stream = io.BytesIO(value)
            stream.seek(HEADER_BYTES)
            try:
                record = reader(stream, schema.writer, schema.reader)
            except Exception as exc:  # fastavro raises many kinds on corrupt input
                append(f"{BAD_AVRO}: {_describe(exc)} (schema id {schema_id})")
                continue
            if stream.tell() != len(value):
                append(f"{BAD_AVRO}: {len(value) - stream.tell()} bytes left after the record (schema id {schema_id})")
                continue
            if not isinstance(record, dict):
                append(f"{NOT_OBJECT}: got {type(record).__name__} (schema id {schema_id})")
                continue
            if schema.decode_fix is not None:
                record = schema.decode_fix(record)
            append(record)
        return out

    def encode(self, record: Mapping[str, Any], schema_id: int) -> bytes:
        """``record`` as a framed value written with the schema of ``schema_id`` (ConfigError if it does not fit)."""
        schema = self.compiled(schema_id)
        if isinstance(schema, str):
            raise ConfigError(f"cannot encode with schema id {schema_id}: {schema}")
        datum: Any = dict(record)
        if schema.encode_fix is not None:
            datum = schema.encode_fix(copy.deepcopy(datum))
        stream = io.BytesIO()
        stream.write(wire_bytes(schema_id, b""))
        try:
            fastavro.schemaless_writer(stream, schema.writer, datum)
        except Exception as exc:
            raise ConfigError(
                f"record does not fit Avro schema id {schema_id}: {_describe(exc)}",
                hint="compare the record's fields and types with the schema",
            ) from None
        return stream.getvalue()

    def encode_many(self, records: Iterable[Mapping[str, Any]], schema_id: int) -> list[bytes]:
        """:meth:`encode` for many records with one schema."""
        return [self.encode(r, schema_id) for r in records]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


_CODECS: dict[tuple[Any, ...], AvroCodec] = {}


def codec_for(registry_url: str | None, schema_files: Mapping[int, str], reader_schema: str | None) -> AvroCodec:
    """The codec of a spec's Avro settings, built once per process (schemas are then fetched once per id).

    ``.avsc`` paths are relative to the working directory. A registry is checked when the codec is built, so
    a registry that is down stops a run before anything is read or written.
    """
    key = (registry_url, tuple(sorted(schema_files.items())), reader_schema)
    codec = _CODECS.get(key)
    if codec is None:
        if registry_url is not None:
            codec = AvroCodec.from_registry(registry_url, reader=reader_schema)
            codec.check()
        else:
            codec = AvroCodec.from_files(dict(schema_files) or None, reader=reader_schema)
        _CODECS[key] = codec
    return codec
