"""The worker pool: results in task order, on threads by default, in spawned processes on request (with the
allocator settings they start with), and a failed task stops the tasks not yet started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from recovery.memory import ALLOCATOR_ENV, trim_memory
from recovery.replay.pool import run_tasks, stop_point
from recovery.replay.progress import PartitionProgress


def where(name: str, progress: object) -> tuple[str, str | None, str | None, int, str]:
    """What a task sees: its name, the allocator settings of its process, its process id and thread name."""
    env = os.environ
    return name, env.get("MALLOC_ARENA_MAX"), env.get("_RJEM_MALLOC_CONF"), os.getpid(), threading.current_thread().name


def slow_or_failing(name: str, progress: object) -> str:
    if name == "bad":
        time.sleep(0.1)  # the long task is running by then
        raise ValueError("task bad failed")
    for _ in range(100 if name == "long" else 4):  # 5 s for the long one, unless it is stopped
        time.sleep(0.05)
        stop_point()
    return name


def quiet() -> PartitionProgress:
    return PartitionProgress("test", enabled=False)


def test_tasks_run_on_threads_of_this_process_in_task_order() -> None:
    found = run_tasks(where, ["a", "b", "c", "d"], workers=2, progress=quiet())
    assert [name for name, *_ in found] == ["a", "b", "c", "d"]
    assert {pid for *_, pid, _ in found} == {os.getpid()}
    threads = {thread for *_, thread in found}
    assert threading.current_thread().name not in threads
    assert 1 <= len(threads) <= 2


def test_a_failed_task_stops_the_running_one_and_cancels_the_rest() -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match="task bad failed"):
        run_tasks(slow_or_failing, ["long", "bad", *[f"later{i}" for i in range(20)]], workers=2, progress=quiet())
    # the long task alone takes 5 s, the 20 later ones 2 s on 2 threads: it stopped at its next stop point
    assert time.monotonic() - started < 1.0
    # the next run is not stopped
    assert run_tasks(slow_or_failing, ["a", "b"], workers=2, progress=quiet()) == ["a", "b"]


def test_spawned_workers_start_with_the_allocator_settings_and_the_parent_keeps_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    before = os.environ.get("_RJEM_MALLOC_CONF")  # polars' own value once it is imported
    found = run_tasks(where, ["a", "b", "c"], workers=2, progress=quiet(), processes=True)
    assert [name for name, *_ in found] == ["a", "b", "c"]
    assert {arenas for _, arenas, *_ in found} == {ALLOCATOR_ENV["MALLOC_ARENA_MAX"]}
    # polars puts its defaults in front when the worker imports it; the last value of an option wins
    assert all(conf and conf.endswith(ALLOCATOR_ENV["_RJEM_MALLOC_CONF"]) for _, _, conf, *_ in found)
    assert os.getpid() not in {pid for *_, pid, _ in found}
    assert "MALLOC_ARENA_MAX" not in os.environ  # restored once the workers are spawned
    assert os.environ.get("_RJEM_MALLOC_CONF") == before


def test_a_setting_already_in_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    monkeypatch.setenv("_RJEM_MALLOC_CONF", "dirty_decay_ms:700")
    found = run_tasks(where, ["a", "b"], workers=2, progress=quiet(), processes=True)
    assert {arenas for _, arenas, *_ in found} == {"8"}
    assert all(conf and conf.endswith("dirty_decay_ms:700") for _, _, conf, *_ in found)
    assert os.environ["MALLOC_ARENA_MAX"] == "8"


def test_one_worker_runs_here_and_trimming_is_harmless() -> None:
    trim_memory()
    found = run_tasks(where, ["a"], workers=2, progress=quiet())
    assert found[0][3] == os.getpid()
    assert found[0][4] == threading.current_thread().name


INTERRUPTED = """
import sys, time
from recovery.replay.pool import run_tasks, stop_point
from recovery.replay.progress import PartitionProgress

def long(name, progress):
    for _ in range(200):  # 10 s unless stopped
        time.sleep(0.05)
        stop_point()
    return name

print("started", flush=True)
started = time.monotonic()
try:
    run_tasks(long, ["a", "b", "c"], workers=2, progress=PartitionProgress("t", enabled=False))
except KeyboardInterrupt:
    print(f"interrupted {time.monotonic() - started:.1f}", flush=True)
"""


def test_ctrl_c_stops_the_tasks_on_threads_at_once() -> None:
    """SIGINT may be delivered to any thread; the main thread still notices it and the tasks stop."""
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job ignores SIGINT
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    time.sleep(1.0)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    seconds = float(out.split()[-1])
    assert out.startswith("interrupted") and seconds < 3.0  # the tasks would take 10 s


class SlowClose:
    """A reader whose close takes a while, as a librdkafka consumer's does."""

    def __init__(self) -> None:
        self.closed_on: str | None = None

    def close(self) -> None:
        time.sleep(0.3)
        self.closed_on = threading.current_thread().name


def test_a_reader_is_closed_on_a_thread_of_its_own_without_holding_up_the_caller() -> None:
    from recovery.kafka.client import close_soon

    reader = SlowClose()
    started = time.monotonic()
    close_soon(reader)  # type: ignore[arg-type]
    assert time.monotonic() - started < 0.2 and reader.closed_on is None
    closers = [t for t in threading.enumerate() if t.name == "recovery-close-reader"]
    assert closers and not closers[0].daemon  # the interpreter waits for it before exiting
    for thread in closers:
        thread.join(5)
    assert reader.closed_on == "recovery-close-reader"


def test_a_negative_number_of_workers_is_refused_and_auto_runs_the_tasks_on_threads() -> None:
    from recovery.errors import ConfigError
    from recovery.replay.pool import AUTO, check_workers

    with pytest.raises(ConfigError, match="workers must be >= 1, or 0"):
        check_workers(-1)
    found = run_tasks(where, ["a", "b", "c", "d"], workers=AUTO, progress=quiet(), held=True)
    assert [f[0] for f in found] == ["a", "b", "c", "d"]
    assert {f[3] for f in found} == {os.getpid()}
