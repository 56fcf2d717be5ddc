"""``pytest --nbval-lax notebooks/``: every runbook with its default parameters, against a demo incident.

Before the first notebook cell runs, this sets up what the notebooks' defaults point at:

- a broker: ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a local broker started for the session in a
  temporary directory (it dies with the session);
- a demo incident simulated on topics unique to the session (the same parameters as ``make demo``);
- a working directory (``RECOVERY_WORKDIR``) holding ``pipeline.toml`` (naming those topics) and
  ``incidents/demo.json``, where ``fixes/demo`` is written by 02 and read by 03.

Kernels inherit the environment, so the notebooks find all three without a parameter.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from recovery.kafka.broker import LocalBroker
from recovery.config import PROJECT_ROOT, KafkaSettings
from recovery.notebook.explore import WORKDIR_ENV
from recovery.sim.simulate import simulate
from recovery.spec import PipelineSpec, load_spec
from recovery.sim.ticks import SimulationParams

DEMO = SimulationParams(symbols=3, events=6000, seed=7)
_state: dict[str, Any] = {}


def spec_toml(spec: PipelineSpec) -> str:
    """The spec as TOML (what ``load_spec`` reads back)."""
    data = spec.to_dict()
    lines = ["[topics]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in data["topics"].items()]
    lines.append("[fields]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in data["fields"].items()]
    for metric in data["metrics"]:
        lines.append("[[metrics]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in metric.items()]
    return "\n".join(lines) + "\n"


def _prepare() -> None:
    tmp = tempfile.TemporaryDirectory(prefix="recovery-notebooks-")
    _state["tmp"] = tmp
    root = Path(tmp.name)
    _state["env"] = {name: os.environ.get(name) for name in ("KAFKA_BOOTSTRAP_SERVERS", WORKDIR_ENV)}
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        broker = LocalBroker(root / "kafka")
        _state["broker"] = broker
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.start(tie_to_parent=True, timeout_s=90)
    workdir = root / "work"
    (workdir / "incidents").mkdir(parents=True)
    suffix = uuid.uuid4().hex[:8]
    data = load_spec(PROJECT_ROOT / "pipeline.toml").to_dict()
    data["topics"].update(
        raw=f"nb-ticks-{suffix}",
        output=f"nb-ticks-{suffix}.sma",
        corrections=f"nb-ticks-{suffix}.sma.corrections",
        audit=f"nb-audit-{suffix}",
    )
    spec_path = workdir / "pipeline.toml"
    spec_path.write_text(spec_toml(PipelineSpec.from_dict(data)))
    spec = load_spec(spec_path)
    simulate(KafkaSettings.from_env(), spec, DEMO, out=workdir / "incidents" / "demo.json")
    os.environ[WORKDIR_ENV] = str(workdir)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.notebook)
            item.add_marker(pytest.mark.kafka)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Runs before nbval starts a notebook's kernel (its first cell's setup), once per session."""
    if "tmp" not in _state:
        _prepare()


def pytest_sessionfinish(session: pytest.Session) -> None:
    broker = _state.pop("broker", None)
    if broker is not None:
        broker.stop()
    for name, value in _state.pop("env", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    tmp = _state.pop("tmp", None)
    if tmp is not None:
        tmp.cleanup()
