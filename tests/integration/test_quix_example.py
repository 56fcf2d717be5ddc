"""The Quix Streams example, small: the app (its own process, its own environment) broken by the fault script
and run clean, then the oracle checks: check-spec 100 % on the clean run, recover's classes equal the
oracle's, corrections in the outputs' layout turn the faulty outputs into the clean run's."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "quix-streams"


@pytest.mark.kafka
@pytest.mark.timeout(600)
def test_the_quix_streams_example_is_recovered_as_its_clean_run_says(kafka_bootstrap: str, tmp_path: Path) -> None:
    assert (EXAMPLE / ".venv" / "bin" / "python").exists(), "the example's environment is missing: run `make setup`"
    recovery = Path(sys.executable).parent / "recovery"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "story.py"), "--bootstrap", kafka_bootstrap, "--events", "1500",
         "--devices", "8", "--seed", "11", "--prefix", f"qx-{uuid.uuid4().hex[:8]}", "--work", str(tmp_path),
         "--recovery", str(recovery)],
        capture_output=True, text=True, timeout=580,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads((tmp_path / "oracle.json").read_text())
    assert report["check_spec_passed"]
    classes = {row["class"]: row for row in report["classes"]}
    # the bad deploy makes results wrong, the misrouted sink loses them: the oracle must see both
    assert classes["wrong"]["expected"] > 0 and classes["missing"]["expected"] > 0
    for row in report["classes"]:
        assert (row["found"], row["matched"]) == (row["expected"], row["expected"]), row
    assert report["apply_rows_compared"] > 0 and report["apply_differences"] == []
