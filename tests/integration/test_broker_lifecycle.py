"""The test session never leaves a broker running: not after a failing test, not after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from recovery.config import PROJECT_ROOT


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(PROBE_PIDFILE=str(tmp_path / "pid"), **extra)
    return env


def wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)


def test_broker_stopped_after_failing_session(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration/broker_probe.py"],
        cwd=PROJECT_ROOT,
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "deliberate failure" in result.stdout
    pid = int((tmp_path / "pid").read_text())
    assert not alive(pid), f"broker pid {pid} still running after the session"


def test_broker_dies_with_a_killed_session(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration/broker_probe.py"],
        cwd=PROJECT_ROOT,
        env=child_env(tmp_path, PROBE_HANG="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(tmp_path / "pid", 120)
        pid = int((tmp_path / "pid").read_text())
        assert alive(pid)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid), f"broker pid {pid} outlived its killed session"
