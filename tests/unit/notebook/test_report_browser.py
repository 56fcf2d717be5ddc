"""HTML reports render in a real browser without network access: every chart drawn, no console errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recovery.notebook import runbook
from tests.browser import Chromium, find_chromium

pytestmark = pytest.mark.notebook

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny_report.ipynb"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    if find_chromium() is None:
        pytest.fail("chromium is not installed: `make setup` installs it (apt-get install -y chromium)")
    with Chromium(user_data_dir=tmp_path_factory.mktemp("chromium-profile")) as chromium:
        yield chromium


def test_a_report_draws_every_chart_offline(browser: Chromium, tmp_path: Path) -> None:
    run = runbook.run_notebook(TINY, {"rows": 60}, out_dir=tmp_path / "reports")
    assert run.status == "ok" and run.html
    report = browser.open_report(tmp_path / "reports" / run.run_id / run.html, screenshot=tmp_path / "tiny.png")
    assert len(report.charts) == 2
    assert report.undrawn == []
    assert report.errors == []
    assert report.warnings == []
    assert report.screenshot is not None and report.screenshot.read_bytes().startswith(b"\x89PNG")

    index = browser.open_report(tmp_path / "reports" / "index.html")
    assert index.errors == [] and index.charts == []


def test_the_check_sees_a_chart_that_did_not_draw(browser: Chromium, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><body><div class="recovery-chart" id="c1"></div>'
        '<script src="https://cdn.jsdelivr.net/npm/vega@6"></script>'
        "<script>vegaEmbed('#c1', {});</script></body></html>"
    )
    report = browser.open_report(page, charts_timeout_ms=500)
    assert [c["id"] for c in report.undrawn] == ["c1"]
    assert any("vegaEmbed is not defined" in e for e in report.errors), report.errors
    assert any("ERR_NAME_NOT_RESOLVED" in e for e in report.errors), report.errors  # no network
