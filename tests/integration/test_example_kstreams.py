"""The Kafka Streams example (examples/kafka-streams) on the session's broker, in a small version.

The job runs twice over the same orders: once with the incident's faults (SIGKILL before a commit, a bad
deploy, a lost stretch of output, duplicated and late input), once clean. The expected discrepancies are the
difference between the two runs' outputs, computed by the example's own oracle, never by the toolkit; the
recovery of the faulty run must find exactly them, and its corrections, in the job's own layout, must turn
the faulty outputs into the clean run's.
"""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kafka-streams"


def _story() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kstreams_story", EXAMPLE / "story.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built_job() -> Path:
    """The job's jar and its classpath, built by Maven if `make setup` has not (the local repository caches it)."""
    jar = EXAMPLE / "target" / "merchant-revenue.jar"
    if not (jar.is_file() and (EXAMPLE / "target" / "lib").is_dir()):
        subprocess.run(["mvn", "-q", "-B", "-f", str(EXAMPLE / "pom.xml"), "package"], check=True, timeout=600)
    return jar


@pytest.mark.timeout(900)
def test_the_recovery_of_a_broken_kafka_streams_job_matches_its_clean_rerun(
    built_job: Path, kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    story = _story()
    found = story.run(kafka_bootstrap, events=2_000, seed=11, prefix=unique_name("ks") + "-", work=tmp_path / "work")
    classes = {c["name"]: c for c in found["classes"]}
    # the faults showed: a lost stretch of output (missing) and a bad deploy (wrong) at least
    assert classes["missing"]["expected"] > 0
    assert classes["wrong"]["expected"] > 0
    assert classes["ok"]["expected"] > 0
    assert found["check_spec_exit"] == 0, "the spec does not reproduce the clean run"
    for name, c in classes.items():
        assert (c["found"], c["both"]) == (c["expected"], c["expected"]), f"{name}: {c}"
    assert found["still_differ"] == []
    assert story.passed(found)
