"""Tables in reports: polars frames drawn as plain HTML tables, result windows shown as times.

polars draws a string cell as ``"1,234"`` (quoted) and every time as a bare epoch millisecond; a report is
read by people, so :func:`use_report_tables` makes notebooks draw every frame with :func:`frame_html`:
text as text, numbers right-aligned with thousands separators, nulls as a dash, long frames cut in the
middle. :func:`readable_results` turns the ``window`` and ``time_ms`` of results into ISO-8601 times.
"""

from __future__ import annotations

import html
from typing import Any

import polars as pl

from recovery.notebook.timefmt import ISO_COLUMN_FORMAT
from recovery.spec import PipelineSpec

MAX_ROWS = 20
# integer columns that are identifiers, not amounts: no thousands separators
PLAIN_INTEGERS = frozenset({"partition", "offset", "first_offset", "last_offset", "seq", "window", "_offset"})
TABLE_CSS = (
    "<style>table.rc-table{border-collapse:collapse;font-size:12.5px;margin:4px 0 10px}"
    "table.rc-table th{text-align:left;font-weight:600;border-bottom:1px solid #9aa1ab;padding:3px 10px}"
    "table.rc-table td{padding:2px 10px;border-bottom:1px solid #eceff3;vertical-align:top}"
    "table.rc-table td.num,table.rc-table th.num{text-align:right;font-variant-numeric:tabular-nums}"
    "table.rc-table td.null{color:#9aa1ab}table.rc-table caption{caption-side:bottom;text-align:left;"
    "color:#5c677d;font-size:11.5px;padding-top:3px}</style>"
)


def cell_text(value: Any, column: str = "") -> str:
    """One cell as people read it: ``12,345``, ``0.125``, ``AAPL`` (no quotes), ``-`` for null."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value) if column in PLAIN_INTEGERS else f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "NaN"
        return f"{value:,.6f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else f"{value:.6g}"
    return str(value)


def frame_html(frame: pl.DataFrame, max_rows: int = MAX_ROWS) -> str:
    """``frame`` as an HTML table (the first and last rows when it is longer than ``max_rows``)."""
    numeric = {name for name, dtype in frame.schema.items() if dtype.is_numeric()}
    head = "".join(
        f'<th class="num">{html.escape(c)}</th>' if c in numeric else f"<th>{html.escape(c)}</th>"
        for c in frame.columns
    )
    shown = frame if frame.height <= max_rows else pl.concat([frame.head(max_rows // 2), frame.tail(max_rows // 2)])
    rows = []
    for i, row in enumerate(shown.iter_rows()):
        if frame.height > max_rows and i == max_rows // 2:
            rows.append(
                f'<tr><td colspan="{frame.width}" class="null">... {frame.height - max_rows:,} more rows</td></tr>'
            )
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            kind = "null" if value is None else ("num" if column in numeric else "")
            css = f' class="{kind}"' if kind else ""
            cells.append(f"<td{css}>{html.escape(cell_text(value, column))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = f"<caption>{frame.height:,} rows</caption>" if frame.height > max_rows else ""
    if frame.height == 0:
        rows.append(f'<tr><td colspan="{max(1, frame.width)}" class="null">(no rows)</td></tr>')
    body = "".join(rows)
    return f'{TABLE_CSS}<table class="rc-table">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def use_report_tables() -> bool:
    """Draw polars frames with :func:`frame_html` in the running IPython kernel (False outside one)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.display_formatter.formatters["text/html"].for_type(pl.DataFrame, frame_html)
    return True


def readable_results(frame: pl.DataFrame, spec: PipelineSpec) -> pl.DataFrame:
    """Results (corrections, comparisons, previews) with times as ISO-8601 UTC instead of epoch ms.

    ``window`` is a window start for time-window metrics (shown as a time) and a sequence number for
    count windows (kept as a number); it becomes text so both fit one column. ``time_ms`` becomes ``time``.
    """
    timed = [m.name for m in spec.metrics if m.is_windowed]
    out = frame
    if "window" in frame.columns and "metric" in frame.columns:
        as_time = pl.from_epoch(pl.col("window"), time_unit="ms").dt.strftime(ISO_COLUMN_FORMAT)
        out = out.with_columns(
            pl.when(pl.col("metric").is_in(timed))
            .then(as_time)
            .otherwise(pl.lit("seq ") + pl.col("window").cast(pl.String))
            .alias("window")
        )
    if "time_ms" in frame.columns:
        out = out.with_columns(
            pl.from_epoch(pl.col("time_ms"), time_unit="ms").dt.strftime(ISO_COLUMN_FORMAT).alias("time_ms")
        ).rename({"time_ms": "time"})
    return out
