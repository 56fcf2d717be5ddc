"""Reports of a long incident read well: 19 years of daily prices on the real broker, notebooks 01, 02 and 03.

A new user's case: two symbols with one price a day from 2007 to 2025, a moving average per day and a weekly
mean, published in the toolkit's own output record. Injected here: a raw event produced twice and an average
that counted the copy (and so missed the oldest event of its window), two averages never published, one
published twice, one weekly mean off by one, one malformed raw record. Expected values come from this
construction, never from the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from recovery.config import KafkaSettings
from recovery.kafka.clients import producer
from recovery.notebook import runbook

pytestmark = [pytest.mark.notebook, pytest.mark.timeout(600)]

DAY = 86_400_000
WEEK = 7 * DAY
START = 1_167_868_800_000  # 2007-01-04T00:00Z, a Thursday: epoch-aligned weeks start on Thursdays
DAYS = 991 * 7  # to 2026-01-01: 19 years less three days
END = START + DAYS * DAY
KEYS = ("ACME", "BOLT")
DUP_DAY = 4000  # ACME's event of this day is produced twice
WRONG_SMA_DAY = 4002  # ACME's average of this day counted the copy and missed day 3998
MISSING_SMA_DAYS = (100, 5000)  # BOLT
DUPLICATED_SMA_DAY = 200  # BOLT, published twice with the same value
WRONG_WEEK = 900  # BOLT's weekly mean, published one too high
BAD_RECORD = b'{"event_id": "broken'
EXPECTED = {"ok": 2 * DAYS + 2 * 991 - 5, "missing": 2, "wrong": 2, "duplicate": 1, "extra": 0}


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def price(k: int, day: int) -> float:
    return round(100.0 + 50 * k + day % 30 + day * 0.01, 2)


def output(metric: str, key: str, window: int, time_ms: int, value: float, offsets: list[int]) -> bytes:
    """The toolkit's output record; ``offsets``: the raw records the result counted."""
    record = {
        "metric": metric,
        "key": key,
        "window": window,
        "time_ms": time_ms,
        "value": value,
        "count": len(offsets),
        "partition": 0,
        "first_offset": min(offsets),
        "last_offset": max(offsets),
        "worker": "daily-job",
    }
    return json.dumps(record, separators=(",", ":")).encode()


def produce_incident(settings: KafkaSettings, raw: str, out: str) -> None:
    """One partition each, so an offset is the position in production order."""
    offsets: dict[tuple[str, int], int] = {}
    dup_offset = -1
    with producer(settings, linger_ms=20) as p:
        position = 0
        for day in range(DAYS):
            ts = START + day * DAY + DAY // 2
            for k, key in enumerate(KEYS):
                event = {"event_id": f"{key}-{day}", "symbol": key, "ts": ts, "seq": day + 1}
                event |= {"price": price(k, day), "volume": 1.0}
                copies = 2 if (key, day) == ("ACME", DUP_DAY) else 1
                for copy in range(copies):
                    p.send(raw, key=key.encode(), value=json.dumps(event).encode(), timestamp_ms=ts)
                    if copy == 0:
                        offsets[(key, day)] = position
                    else:
                        dup_offset = position
                    position += 1
            if day == 10:
                p.send(raw, key=b"ACME", value=BAD_RECORD, timestamp_ms=ts)
                position += 1
        for k, key in enumerate(KEYS):
            for day in range(DAYS):
                ts = START + day * DAY + DAY // 2
                days = list(range(max(0, day - 4), day + 1))
                value = sum(price(k, d) for d in days) / len(days)
                used = [offsets[(key, d)] for d in days]
                if (key, day) == ("ACME", WRONG_SMA_DAY):  # the last five records as they arrived
                    counted = [day - 3, DUP_DAY, DUP_DAY, day - 1, day]
                    value = sum(price(k, d) for d in counted) / 5
                    used = (
                        [offsets[(key, d)] for d in counted[:2]]
                        + [dup_offset]
                        + [offsets[(key, d)] for d in counted[3:]]
                    )
                    record = output("sma_5", key, day + 1, ts, value, used)
                elif (key, day) in [("BOLT", d) for d in MISSING_SMA_DAYS]:
                    continue
                else:
                    record = output("sma_5", key, day + 1, ts, value, used)
                copies = 2 if (key, day) == ("BOLT", DUPLICATED_SMA_DAY) else 1
                for _ in range(copies):
                    p.send(out, key=key.encode(), value=record, timestamp_ms=ts)
            for week in range(DAYS // 7):
                start = START + week * WEEK
                days = range(7 * week, 7 * week + 7)
                mean = sum(price(k, d) for d in days) / 7 + (1.0 if (key, week) == ("BOLT", WRONG_WEEK) else 0.0)
                used = [offsets[(key, d)] for d in days]
                p.send(
                    out, key=key.encode(), value=output("mean_7d", key, start, start, mean, used), timestamp_ms=start
                )
        p.flush()
    assert dup_offset == offsets[("ACME", DUP_DAY)] + 1


def spec_text(raw: str, out: str) -> str:
    return f"""
[topics]
raw = "{raw}"
output = "{out}"
corrections = "{out}.fix"
audit = "{out}.audit"
[fields]
id = "event_id"
key = "symbol"
time = "ts"
seq = "seq"
price = "price"
volume = "volume"
[[metrics]]
name = "sma_5"
kind = "sma"
field = "price"
n = 5
[[metrics]]
name = "mean_7d"
kind = "mean"
field = "price"
window_ms = {WEEK}
grace_ms = 0
"""


class Runs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.records: dict[str, runbook.RunRecord] = {}

    def run(self, label: str, notebook: str, **parameters: Any) -> runbook.RunRecord:
        record = runbook.run_notebook(notebook, parameters, out_dir=self.root / "reports", run_id=label)
        assert record.status == "ok", (label, record.error)
        self.records[label] = record
        return record

    def html(self, label: str) -> str:
        record = self.records[label]
        return (self.root / "reports" / label / str(record.html)).read_text()

    def notebook(self, label: str) -> Any:
        record = self.records[label]
        return nbformat.read(self.root / "reports" / label / str(record.ipynb), as_version=4)

    def output_of(self, label: str, source: str, mime: str) -> str:
        """The ``mime`` output of the cell whose source is ``source`` or whose last line is ``source``."""
        for cell in self.notebook(label).cells:
            text = cell.source.strip()
            if cell.cell_type == "code" and (text == source or text.splitlines()[-1:] == [source]):
                for out in cell.get("outputs", []):
                    if mime in out.get("data", {}):
                        return str(out["data"][mime])
        raise AssertionError(f"{label}: no {mime} output of {source!r}")

    def time_axes(self, label: str) -> list[tuple[str, dict[str, Any]]]:
        """(title, axis) of every UTC time axis of every chart the notebook drew."""
        found: list[tuple[str, dict[str, Any]]] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("scale"), dict) and node["scale"].get("type") == "utc" and "axis" in node:
                    found.append((str(node.get("title")), node["axis"]))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        for cell in self.notebook(label).cells:
            for out in cell.get("outputs", []):
                text = out.get("data", {}).get("text/html", "")
                for match in re.finditer(r"window\.vegaEmbed\(el, ", text):
                    start = match.end()
                    walk(json.loads(text[start : text.index(', {"actions"', start)]))
        return found


@pytest.fixture(scope="module")
def runs(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    from recovery.kafka.topics import ensure_topic

    root = tmp_path_factory.mktemp("long-span")
    settings = KafkaSettings.from_env({"bootstrap_servers": kafka_bootstrap})
    suffix = re.sub(r"\D", "", str(dt.datetime.now(dt.UTC).timestamp()))[-10:]
    raw, out = f"daily-{suffix}", f"daily-{suffix}.stats"
    for topic in (raw, out):
        ensure_topic(settings, topic, 1, None)
    produce_incident(settings, raw, out)
    spec_path = root / "daily.toml"
    spec_path.write_text(spec_text(raw, out))
    times = {"incident_file": "", "spec_path": str(spec_path), "from_time": iso(START), "to_time": iso(END)}
    r = Runs(root)
    r.run("01", "01_explore_incident", **times)
    r.run("02", "02_recompute_compare", **times, fixset_dir=str(root / "fixes"))
    r.run("03", "03_publish_fixes", fixset=str(root / "fixes"))
    yield r


def test_the_counts_are_the_injected_ones(runs: Runs) -> None:
    found = runs.records["02"].results["counts"]
    assert {s: found[s] for s in EXPECTED} == EXPECTED


def test_every_time_axis_shows_years_with_few_labels(runs: Runs) -> None:
    for label in ("01", "02"):
        axes = runs.time_axes(label)
        assert len(axes) >= (2 if label == "01" else 3), (label, axes)
        for title, axis in axes:
            assert axis["format"] == "%Y", (label, title, axis)  # the span is years: label years
            assert axis["tickCount"]["interval"] == "year", (label, title, axis)
            assert axis["tickCount"]["step"] >= 2, (label, title, axis)  # at most ten labels over 19 years


def test_the_range_reads_in_years(runs: Runs) -> None:
    html = runs.html("01")
    assert "19 years)" in html
    assert " min)" not in html


def test_figure_tables_show_numbers_not_quoted_strings(runs: Runs) -> None:
    overview = runs.output_of("01", "view = explore.load_range(case)\nexplore.overview(view)", "text/html")
    assert "&quot;" not in overview
    assert f"<td>valid events with event time in range</td><td>{2 * DAYS + 1:,}</td>" in overview
    assert "&quot;" not in runs.output_of("02", "review.fixset_table(report)", "text/html")


def test_quarantine_reasons_name_the_position_once(runs: Runs) -> None:
    html = runs.html("01")
    assert "bad JSON: Unterminated string starting at char 13" in html
    assert "at at" not in html


def test_the_recover_summary_times_its_steps(runs: Runs) -> None:
    overview = runs.output_of(
        "02",
        "review.recovery_overview(report)",
        "text/html",
    )
    line = re.search(r"<td>time</td><td>([^<]+)</td>", overview)
    assert line, overview[-1500:]
    text = line.group(1)
    assert re.fullmatch(r"[\d.,]+ (ms|s|min): truth [\d.,]+ (ms|s), originals .+, compare .+, write .+", text), text
    assert "0.0 / 0.0" not in text and not text.startswith("0 ms")


def test_fix_set_tables_show_windows_as_times(runs: Runs) -> None:
    table = runs.output_of("02", "review.fixset_table(report)", "text/html")
    week_start = START + WRONG_WEEK * WEEK
    assert f"<td>{iso(week_start)}</td>" in table  # the weekly mean's window
    assert f"<td>seq {WRONG_SMA_DAY + 1}</td>" in table  # a count window keeps its seq
    assert str(week_start) not in table
    preview = runs.output_of("03", "review.preview_table(result, fixset)", "text/html")
    assert f"<td>{iso(week_start)}</td>" in preview
    assert f"<td>{iso(START + MISSING_SMA_DAYS[0] * DAY + DAY // 2)}</td>" in preview  # a result's time


def test_a_wrong_average_shows_the_event_it_missed_and_the_copy_it_counted(runs: Runs) -> None:
    text = runs.output_of("02", "explain.why_wrong(case, report)", "text/markdown")
    section = text[text.index(f"seq {WRONG_SMA_DAY + 1}") :].split("####")[0]
    assert "**1 missed** by the original" in section and "**1 counted twice** by the original" in section
    rows = [line.split("|")[1:3] for line in section.splitlines() if "| ACME-" in line]
    assert sorted((event.strip(), mark.strip()) for mark, event in rows) == [
        ("ACME-3998", "missed"),
        ("ACME-3999", "counted"),
        ("ACME-4000", "counted"),
        ("ACME-4000", "counted twice"),
        ("ACME-4001", "counted"),
        ("ACME-4002", "counted"),
    ]
    missing = text[text.index(f"seq {MISSING_SMA_DAYS[0] + 1}") :].split("####")[0]
    assert "nothing was published" in missing
