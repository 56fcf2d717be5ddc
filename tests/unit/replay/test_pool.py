"""The worker pool: results in task order, and the allocator settings the spawned workers start with."""

from __future__ import annotations

import os

import pytest

from recovery.replay.pool import WORKER_ALLOCATOR_ENV, run_tasks, trim_memory
from recovery.replay.progress import PartitionProgress


def allocator_settings(name: str, progress: object) -> tuple[str, str | None, int]:
    """What a task sees: its name, the worker's allocator setting and its process id."""
    return name, os.environ.get("MALLOC_ARENA_MAX"), os.getpid()


def quiet() -> PartitionProgress:
    return PartitionProgress("test", enabled=False)


def test_spawned_workers_start_with_the_allocator_settings_and_the_parent_keeps_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    found = run_tasks(allocator_settings, ["a", "b", "c"], workers=2, progress=quiet())
    assert [name for name, _, _ in found] == ["a", "b", "c"]
    assert {setting for _, setting, _ in found} == {WORKER_ALLOCATOR_ENV["MALLOC_ARENA_MAX"]}
    assert os.getpid() not in {pid for _, _, pid in found}
    assert "MALLOC_ARENA_MAX" not in os.environ  # restored once the workers are spawned


def test_a_setting_already_in_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    found = run_tasks(allocator_settings, ["a", "b"], workers=2, progress=quiet())
    assert {setting for _, setting, _ in found} == {"8"}
    assert os.environ["MALLOC_ARENA_MAX"] == "8"


def test_one_worker_runs_here_and_trimming_is_harmless() -> None:
    trim_memory()
    found = run_tasks(allocator_settings, ["a"], workers=2, progress=quiet())
    assert found[0][2] == os.getpid()
