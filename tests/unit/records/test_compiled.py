"""The compiled decoder of fixed-layout records gives the same events, outputs and quarantine as the regex
passes it replaces (the oracle: the same functions run with the extension hidden, no broker).

Values are written token by token near the toolkit's layouts, so most follow them and many miss by one
detail: escapes, control characters, non-UTF-8 bytes, integers beyond 64 bits, ``-0``, ``1e999``, leading
zeros, a dangling fraction or exponent, spaces, a truncated or reordered record.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from recovery.frames import RECORDS
from recovery.records import validate as validate_module
from recovery.records.compiled import Template, compiled_available, template_columns
from recovery.records.outputs import FIELDS, decode_outputs
from recovery.records.validate import validate
from recovery.spec import FieldsSpec

pytestmark = pytest.mark.skipif(not compiled_available(), reason="the compiled extension is not built")

EVENT_FIELDS = ("event_id", "symbol", "seq", "ts", "price", "volume")

_chars = st.sampled_from(
    ["a", "Z", "0", " ", '"', "\\", '\\"', "\\n", "\\u00e9", "\\x", "\x01", "\x1f", "é", "€", "\x7f", "/"]
)
texts = st.lists(_chars, max_size=6).map("".join)
ints = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.sampled_from(["-0", "0", "00", "01", "-", "1.0", "9223372036854775807", "9223372036854775808", "1e3"]),
)


def _decimal(digits: int, scale: int) -> str:
    text = str(digits).rjust(scale + 1, "0")
    return f"{text[: len(text) - scale]}.{text[len(text) - scale :]}" if scale else text


# prices as producers write them: a few digits, a point, a few more (the decoder's fast path), and up to 17 digits
short_decimals = st.builds(_decimal, st.integers(0, 10**17), st.integers(0, 17))
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    short_decimals,
    short_decimals.map(lambda t: "-" + t),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(
        ["-0", "-0.0", "0", "1e999", "-1e999", "1E+5", "2e-400", "1.", ".5", "1e", "1e+", "00.5", "0.5e-3", "null"]
    ),
)


@st.composite
def record_text(draw: st.DrawFn, fields: tuple[str, ...], kinds: tuple[str, ...]) -> bytes:
    """A record written token by token: the layout, give or take a detail."""
    parts = []
    for name, kind in zip(fields, kinds, strict=True):
        if kind == "str":
            token = f'"{draw(texts)}"'
        elif kind == "int":
            token = draw(ints)
        else:
            token = draw(numbers)
        parts.append(f'"{name}":{token}')
    if draw(st.integers(0, 9)) == 0:
        i, j = draw(st.integers(0, len(parts) - 1)), draw(st.integers(0, len(parts) - 1))
        parts[i], parts[j] = parts[j], parts[i]
    text = "{" + draw(st.sampled_from([",", ",", ",", ", "])).join(parts) + draw(st.sampled_from(["}", "}", "} ", ""]))
    value = text.encode()
    edit = draw(st.integers(0, 9))
    if edit == 0 and value:
        at = draw(st.integers(0, len(value) - 1))
        value = value[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b" ", b"\x00", b""])) + value[at + 1 :]
    elif edit == 1:
        value = value[: draw(st.integers(0, len(value)))]
    return value


def event_values() -> st.SearchStrategy[bytes | None]:
    kinds = ("str", "str", "int", "int", "num", "num")
    return st.one_of(st.none(), record_text(EVENT_FIELDS, kinds), st.binary(max_size=20))


def output_values() -> st.SearchStrategy[bytes | None]:
    kinds = ("str", "str", "int", "int", "num", "int", "int", "int", "int", "str")
    return st.one_of(st.none(), record_text(FIELDS, kinds), st.binary(max_size=20))


def records_of(values: list[bytes | None]) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame(
        {
            "partition": [i % 2 for i in range(n)],
            "offset": list(range(n)),
            "timestamp_ms": [1_767_225_600_000 + i for i in range(n)],
            "key": [b"A"] * n,
            "value": values,
        },
        schema=RECORDS,
    )


def without_extension(fn: Callable[[], tuple[pl.DataFrame, pl.DataFrame]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "recovery_native", None)  # import recovery_native now raises ImportError
        assert not compiled_available()
        return fn()


def assert_same(compiled: tuple[pl.DataFrame, pl.DataFrame], regex: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    for got, expected in zip(compiled, regex, strict=True):
        assert_frame_equal(got, expected, check_exact=True)


HYPOTHESIS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@HYPOTHESIS
@given(st.lists(event_values(), min_size=1, max_size=30))
def test_validate_gives_the_same_events_and_quarantine_as_the_regex_pass(values: list[bytes | None]) -> None:
    records = records_of(values)
    spec = FieldsSpec()
    expected = without_extension(lambda: validate(records, spec))
    assert_same(validate(records, spec), expected)
    # and when the compiled pass leaves too many rows to check one by one: through the bulk passes
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(validate_module, "FEW_ROWS", 0)
        assert_same(validate(records, spec), expected)


@HYPOTHESIS
@given(st.lists(output_values(), min_size=1, max_size=30))
def test_decode_outputs_gives_the_same_outputs_and_quarantine_as_the_regex_pass(values: list[bytes | None]) -> None:
    records = records_of(values)
    assert_same(decode_outputs(records), without_extension(lambda: decode_outputs(records)))


def test_layout_rows_are_taken_by_the_compiled_pass() -> None:
    """A test that can fail: the canonical rows really go through the compiled decoder."""
    event = b'{"event_id":"A-1","symbol":"A","seq":1,"ts":5,"price":1.5,"volume":2}'
    template = Template(
        literals=(b'{"event_id":', b',"symbol":', b',"seq":', b',"ts":', b',"price":', b',"volume":', b"}"),
        kinds=("str", "str", "int", "int", "num+", "num+"),
        names=("id", "key", "seq", "ts", "price", "volume"),
    )
    values = pl.Series([event, event.replace(b"1.5", b"-1.5"), None, b"\xff"], dtype=pl.Binary)
    got = template_columns(values, template)
    expected = pl.DataFrame(
        {
            "_matched": [True, False, False, False],
            "id": ["A-1", None, None, None],
            "key": ["A", None, None, None],
            "seq": [1, None, None, None],
            "ts": [5, None, None, None],
            "price": [1.5, None, None, None],
            "volume": [2.0, None, None, None],
        }
    )
    assert got is not None
    assert_frame_equal(got, expected)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(short_decimals, short_decimals.map(lambda t: "-" + t)), min_size=1, max_size=200))
def test_numbers_are_read_as_python_reads_them(texts: list[str]) -> None:
    """Decimals are correctly rounded, bit for bit (the oracle: Python's float() of the same text)."""
    template = Template(literals=(b'{"a":', b',"i":', b"}"), kinds=("num?", "int"), names=("a", "i"))
    values = pl.Series([f'{{"a":{t},"i":{t.split(".")[0]}}}'.encode() for t in texts], dtype=pl.Binary)
    got = template_columns(values, template)
    assert got is not None
    assert got.get_column("_matched").all()
    assert [x.hex() for x in got.get_column("a").to_list()] == [float(t).hex() for t in texts]
    assert got.get_column("i").to_list() == [int(t.split(".")[0]) for t in texts]  # at most 18 digits: all fit


def test_an_empty_column_gives_empty_columns() -> None:
    template = Template(literals=(b'{"a":', b"}"), kinds=("int",), names=("a",))
    got = template_columns(pl.Series([], dtype=pl.Binary), template)
    assert got is not None
    assert got.schema == pl.Schema({"_matched": pl.Boolean, "a": pl.Int64}) and got.height == 0


def test_a_template_with_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown field kinds"):
        Template(literals=(b"{", b"}"), kinds=("float",), names=("a",))
