"""Run one measurement in a subprocess: wall time, the stage's own timing and the peak memory of its process tree.

Each stage runs in a fresh process (``python -m bench.stages ...``) so one stage's memory never inflates
another's. While it runs, the parent samples the resident set size of the process and all its descendants
(worker pools, ``kcat``, the JVM of Kafka's perf test) from ``/proc`` every ``SAMPLE_S`` and keeps the
largest sum; the child adds its own peak (``VmHWM``) and its largest waited-for worker (``getrusage``),
which catch spikes shorter than a sampling interval. The reported peak is the larger of the two: for
several processes it is the sum of their RSS (shared pages counted once per process), so it errs on the
high side. A tree whose RSS goes above the memory cap is killed, so one stage cannot push other work on a
shared machine out of memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "
SAMPLE_S = 0.05
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
ROOT = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        found.extend(int(x) for x in text.split())
    return found


def tree_rss_bytes(pid: int) -> int:
    """Sum of the RSS of ``pid`` and all its descendants (0 when it is gone)."""
    total, stack, seen = 0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
        stack.extend(_children(current))
    return total


class _Sampler(threading.Thread):
    """Samples the tree's RSS; kills the tree (its own session) when it goes above ``cap_bytes``."""

    def __init__(self, pid: int, cap_bytes: int | None = None) -> None:
        super().__init__(daemon=True)
        self.pid, self.cap, self.peak, self.capped, self._done = pid, cap_bytes, 0, False, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            current = tree_rss_bytes(self.pid)
            self.peak = max(self.peak, current)
            if self.cap and current > self.cap and not self.capped:
                self.capped = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
            self._done.wait(SAMPLE_S)

    def stop(self) -> None:
        self._done.set()
        self.join()


@dataclass
class Run:
    """One measured run of a command."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    result: dict[str, Any] = field(default_factory=dict)  # what the stage printed (its own timing, counts)
    stdout: str = ""
    stderr: str = ""
    cpu_s: float = 0.0  # CPU seconds of the stage (its own figure), else of the whole process tree
    capped: bool = False  # killed for going above the memory cap

    @property
    def seconds(self) -> float:
        """The stage's own timing when it reported one (excludes start-up and input loading), else wall time."""
        return float(self.result.get("seconds", self.wall_s))


def run_command(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout_s: float = 3600,
    cwd: Path = ROOT,
    memory_cap_gb: float | None = None,
    discard_stdout: bool = False,
) -> Run:
    """Run ``cmd``, sampling its process tree's memory; parses a ``BENCH_RESULT {json}`` line if printed.

    ``memory_cap_gb`` caps the RSS of the whole tree: a stage that goes above it is killed (``Run.capped``)
    instead of pushing other work on a shared machine out of memory.
    """
    cpu_before = _children_cpu_s()
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL if discard_stdout else subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: the memory cap kills the whole tree
    )
    sampler = _Sampler(proc.pid, int(memory_cap_gb * 2**30) if memory_cap_gb else None)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    finally:
        sampler.stop()
    wall_s = time.monotonic() - started
    result: dict[str, Any] = {}
    stdout = stdout or ""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    peak = max(sampler.peak, int(result.get("maxrss_kb", 0)) * 1024)
    cpu_s = float(result.get("cpu_s", _children_cpu_s() - cpu_before))
    return Run(wall_s, peak / 2**20, proc.returncode, result, stdout, stderr, cpu_s, sampler.capped)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stage_command(stage: str, params: dict[str, Any]) -> list[str]:
    """The command that runs one stage of :mod:`bench.stages` in a fresh interpreter."""
    return [sys.executable, "-m", "bench.stages", stage, json.dumps(params)]


@dataclass
class Measurement:
    """The runs of one table row and their medians."""

    name: str
    scenario: str
    items: int
    runs: list[Run]
    notes: str = ""
    status: str = "ok"  # ok | pending | failed | skipped
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        ok = [r.seconds for r in self.runs if r.returncode == 0]
        return statistics.median(ok) if ok and self.status == "ok" else None

    @property
    def per_s(self) -> float | None:
        s = self.seconds
        return self.items / s if s and self.items else None

    @property
    def cpu_s(self) -> float | None:
        ok = [r.cpu_s for r in self.runs if r.returncode == 0]
        return statistics.median(ok) if ok and self.status == "ok" else None

    @property
    def peak_rss_mb(self) -> float | None:
        ok = [r.peak_rss_mb for r in self.runs if r.returncode == 0]
        return statistics.median(ok) if ok and self.status == "ok" else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scenario": self.scenario,
            "items": self.items,
            "status": self.status,
            "notes": self.notes,
            "seconds": self.seconds,
            "per_s": self.per_s,
            "peak_rss_mb": self.peak_rss_mb,
            "cpu_s": self.cpu_s,
            "runs": [
                {
                    "seconds": r.seconds,
                    "wall_s": round(r.wall_s, 3),
                    "cpu_s": round(r.cpu_s, 3),
                    "peak_rss_mb": round(r.peak_rss_mb, 1),
                }
                for r in self.runs
            ],
            "extra": self.extra,
        }
