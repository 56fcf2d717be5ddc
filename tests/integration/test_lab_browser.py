"""The runbooks open and run in JupyterLab in a real browser: notebook 02 on a simulated incident, every chart drawn.

``jupyter lab`` is started on a free port (with ``--allow-root`` only when running as root, as ``make lab``
does) on a copy of the notebooks, with a working directory holding the incident; headless Chromium opens
notebook 02, runs every cell through JupyterLab's own command and reads the notebook's model and page.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recovery.config import PROJECT_ROOT, KafkaSettings
from recovery.notebook.explore import WORKDIR_ENV
from recovery.sim.simulate import simulate
from recovery.sim.ticks import SimulationParams
from recovery.spec import PipelineSpec, load_spec
from tests.browser import Chromium, find_chromium
from tests.integration.test_notebooks import spec_toml

pytestmark = [pytest.mark.notebook, pytest.mark.timeout(240)]

NOTEBOOK = "02_recompute_compare.ipynb"
CHARTS_IN_02 = 4  # class totals, heatmap, class counts, overlays

# The notebook panel, once its kernel is idle: how many code cells ran, their outputs, the drawn charts.
STATE = """
(() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model || !panel.sessionContext) { return {ready: false}; }
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = [];
  for (const cell of panel.content.model.cells) {
    const data = cell.toJSON();
    if (data.cell_type === 'code') { cells.push({count: data.execution_count, outputs: data.outputs}); }
  }
  const charts = Array.from(panel.node.querySelectorAll('.recovery-chart')).map((el) => {
    const drawn = el.querySelector('svg.marks') || el.querySelector('canvas.marks');
    const box = drawn ? drawn.getBoundingClientRect() : null;
    return {kind: drawn ? drawn.tagName.toLowerCase() : null, width: box ? box.width : 0, text: el.textContent};
  });
  return {ready: true, status: kernel ? kernel.status : 'none', cells, charts};
})()
"""


@dataclass
class Lab:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(lab: Lab, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {lab.process.returncode}: {lab.log.read_text()[-2000:]}")
        status_url = f"{lab.url}/api/status?token={lab.token}"
        with contextlib.suppress(OSError), urllib.request.urlopen(status_url, timeout=2) as reply:
            if reply.status == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer within {timeout_s:.0f} s: {lab.log.read_text()[-2000:]}")


@pytest.fixture
def lab(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Lab]:
    workdir = tmp_path / "work"
    (workdir / "incidents").mkdir(parents=True)
    data = load_spec(PROJECT_ROOT / "pipeline.toml").to_dict()
    suffix = uuid.uuid4().hex[:8]
    data["topics"].update(
        raw=f"lab-{suffix}", output=f"lab-{suffix}.sma", corrections=f"lab-{suffix}.fix", audit=f"lab-audit-{suffix}"
    )
    (workdir / "pipeline.toml").write_text(spec_toml(PipelineSpec.from_dict(data)))
    spec = load_spec(workdir / "pipeline.toml")
    settings = KafkaSettings.from_env({"bootstrap_servers": kafka_bootstrap})
    simulate(settings, spec, SimulationParams(symbols=3, events=3000, seed=5), out=workdir / "incidents" / "demo.json")
    notebooks = tmp_path / "notebooks"  # a copy: JupyterLab saves what it runs
    notebooks.mkdir()
    shutil.copy(PROJECT_ROOT / "notebooks" / NOTEBOOK, notebooks / NOTEBOOK)
    port, token = free_port(), uuid.uuid4().hex
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        WORKDIR_ENV: str(workdir),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    command = [
        str(Path(sys.executable).with_name("jupyter")),
        "lab",
        str(notebooks),
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        "--LabApp.expose_app_in_browser=True",
        "--KernelManager.transport_encryption=auto",  # as make lab: no warning about unencrypted channels
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    running = Lab(f"http://127.0.0.1:{port}", token, process, log)
    try:
        wait_until_serving(running)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def poll(browser: Chromium, session: str, done: str, timeout_s: float) -> dict:  # type: ignore[type-arg]
    """The notebook state once ``done`` (a Python predicate name) holds, or the last state at the deadline."""
    deadline = time.monotonic() + timeout_s
    state: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        state = browser.evaluate(session, STATE) or {}
        if CHECKS[done](state):
            return state
        time.sleep(0.5)
    return state


def _idle(state: dict) -> bool:  # type: ignore[type-arg]
    return bool(state.get("ready")) and state.get("status") == "idle"


def _ran(state: dict) -> bool:  # type: ignore[type-arg]
    cells = state.get("cells") or []
    executed = bool(cells) and all(c["count"] is not None for c in cells)
    drawn = [c for c in state.get("charts", []) if c["kind"] in ("svg", "canvas") and c["width"] > 0]
    return _idle(state) and executed and len(drawn) >= CHARTS_IN_02


CHECKS = {"idle": _idle, "ran": _ran}


def test_notebook_02_runs_in_jupyterlab_and_draws_every_chart(lab: Lab, tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.fail("chromium is not installed: `make setup` installs it (apt-get install -y chromium)")
    with Chromium(user_data_dir=tmp_path / "profile", timeout_s=60) as browser:
        session = browser.open_page(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
        opened = poll(browser, session, "idle", 60)
        assert _idle(opened), f"notebook or kernel not ready: {json.dumps(opened)[:500]}"
        browser.evaluate(session, "void window.jupyterapp.commands.execute('notebook:run-all-cells'); true")
        state = poll(browser, session, "ran", 150)

    outputs = [o for cell in state["cells"] for o in cell["outputs"]]
    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o["output_type"] == "error"]
    stderr = ["".join(o["text"]) for o in outputs if o["output_type"] == "stream" and o.get("name") == "stderr"]
    assert errors == [], errors
    assert stderr == [], stderr
    assert all(cell["count"] is not None for cell in state["cells"]), "not every cell ran"
    charts = state["charts"]
    assert len(charts) == CHARTS_IN_02, charts
    assert [c for c in charts if c["kind"] not in ("svg", "canvas") or c["width"] <= 0] == [], charts
    recorded = [o for o in outputs if "application/vnd.recovery.result+json" in o.get("data", {})]
    assert recorded and recorded[-1]["data"]["application/vnd.recovery.result+json"]["expected_counts_match"] is True
