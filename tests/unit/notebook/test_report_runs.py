"""`recovery report` runs a notebook into reports/<run-id>/: executed notebook, offline HTML, index, exit status.

These start a Jupyter kernel (a few seconds each) but need no broker.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from recovery.cli import main
from recovery.notebook import runbook

pytestmark = pytest.mark.notebook

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny_report.ipynb"
TOKEN = "tok-8f3a9c2e-not-for-reports"


def test_a_run_writes_the_executed_notebook_an_offline_report_and_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOVERY_TEST_TOKEN", TOKEN)  # the notebook prints it; the report must not show it
    text = {"rows": "40", "keys": "A,B,C"}
    run = runbook.run_notebook(TINY, text, out_dir=tmp_path, from_text=text)
    assert (run.status, run.error, run.exit_code) == ("ok", None, 0)
    assert run.results == {"wrong": 10, "digest": "tiny-40-10", "alert": False}
    assert run.parameters == {"rows": 40, "keys": ["A", "B", "C"]}

    folder = tmp_path / run.run_id
    assert sorted(p.name for p in folder.iterdir()) == ["run.json", "tiny_report.html", "tiny_report.ipynb"]
    saved = runbook.RunRecord.from_json((folder / "run.json").read_text())
    assert saved == run

    report = (folder / "tiny_report.html").read_text()
    assert report.count("window.vegaEmbed=") == 1  # the chart scripts are inline, once for both charts
    assert report.count('class="recovery-chart"') == 2
    assert not re.search(r"<script[^>]+src=", report)  # nothing to fetch: opens offline
    assert "cdn.jsdelivr.net" not in report and "cdnjs.cloudflare.com" not in report
    assert run.html_bytes is not None and run.html_bytes < 2_000_000

    for name in ("tiny_report.html", "tiny_report.ipynb", "run.json"):
        assert TOKEN not in (folder / name).read_text()
    assert run.secrets_scrubbed == 1  # the printed token (the report is rendered from the scrubbed notebook)
    assert "environment token: ***" in report

    index = (tmp_path / "index.html").read_text()
    assert f'href="{run.run_id}/tiny_report.html"' in index
    assert "tiny-40-10" in index


def test_a_failing_notebook_is_a_failed_run_with_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(TINY), "-p", "label", "fail", "--out", str(tmp_path), "--run-id", "broken"]) == 1
    out = capsys.readouterr().out
    assert "tiny_report: failed" in out and "RuntimeError: the notebook was asked to fail" in out
    run = json.loads((tmp_path / "broken" / "run.json").read_text())
    assert run["status"] == "failed"
    assert "the notebook was asked to fail" in (tmp_path / "broken" / "tiny_report.html").read_text()
    assert "failed" in (tmp_path / "index.html").read_text()


def test_an_alert_exits_non_zero_for_the_scheduler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("rows: 20\nratio: 0.25\n")
    code = main(["report", str(TINY), "-f", str(params), "-p", "max_wrong", "4", "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == runbook.EXIT_ALERT, out
    assert "tiny_report: alert" in out and "digest: tiny-20-5" in out
