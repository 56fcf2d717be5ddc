"""Fixed-layout JSON records decoded in one compiled pass (the ``recovery_native`` extension, when built).

The toolkit's own producers write raw events and output records in one exact layout: literal text between
typed fields. :func:`template_columns` reads every value that follows such a template exactly, the way the
regular expressions of :mod:`recovery.records.validate` and :mod:`recovery.records.outputs` do (field kinds
below), and returns the captured fields as columns; every other value is left to those modules' other paths,
so events, outputs and quarantine stay identical with or without the extension (``make setup`` builds it;
without it the regex passes run).

Field kinds: ``str`` a string without escapes (captured), ``str+`` the same, non-empty; ``int`` a JSON integer
(Int64, null beyond 64 bits); ``num+`` a non-negative JSON number (Float64); ``num?`` ``null`` or a JSON number
(Float64, plus a Boolean ``<name>_plain``: null, or finite and not the integer ``-0``); ``jint`` / ``jstr`` a
JSON integer / string, checked and not captured. Every literal after a field starts with ``,`` or ``}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

KINDS = ("str", "str+", "int", "num+", "num?", "jint", "jstr")
MATCHED = "_matched"


@dataclass(frozen=True)
class Template:
    """``literals[0] kinds[0] literals[1] ... literals[-1]``; ``names``: the column of each captured field."""

    literals: tuple[bytes, ...]
    kinds: tuple[str, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.literals) != len(self.kinds) + 1 or len(self.names) != len(self.kinds):
            raise ValueError("a template needs one literal more than kinds, and one name per kind")
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown field kinds {sorted(unknown)}; use {', '.join(KINDS)}")


def compiled_available() -> bool:
    """True when the compiled extension ``recovery_native`` can be imported here."""
    try:
        import recovery_native  # noqa: F401
    except ImportError:
        return False
    return True


def template_columns(values: pl.Series, template: Template) -> pl.DataFrame | None:
    """``_matched`` (Boolean) and the captured fields of each of ``values`` (Binary; null where it does not
    follow ``template``), in order; None when the extension is not built."""
    try:
        import recovery_native
    except ImportError:
        return None
    # an empty column's buffers may come with dangling, unaligned pointers, which Arrow refuses: decode one
    # null row instead for the columns and their types
    column = values.to_frame("value") if len(values) else pl.DataFrame({"value": [None]}, schema={"value": pl.Binary})
    parts: Sequence[object] = recovery_native.decode_template(
        column, list(template.literals), list(template.kinds), list(template.names)
    )
    frames = [pl.Series(part).struct.unnest() for part in parts]  # type: ignore[arg-type]
    frame = pl.concat(frames, rechunk=False) if len(frames) > 1 else frames[0]
    return frame.rename({"matched": MATCHED}).head(len(values))
