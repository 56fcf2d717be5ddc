"""The allocator settings: which ones a process gets, a user's value kept, and the arena limit applied here."""

from __future__ import annotations

import subprocess
import sys

from recovery.memory import ALLOCATOR_ENV, allocator_settings


def test_an_empty_environment_gets_every_setting() -> None:
    assert allocator_settings({}) == ALLOCATOR_ENV


def test_polars_own_defaults_are_not_a_users_setting() -> None:
    polars_value = "dirty_decay_ms:500,muzzy_decay_ms:1000"
    ours = ALLOCATOR_ENV["_RJEM_MALLOC_CONF"]
    assert allocator_settings({"_RJEM_MALLOC_CONF": polars_value})["_RJEM_MALLOC_CONF"] == ours
    with_thp = polars_value + ",thp:always,metadata_thp:always"
    assert "_RJEM_MALLOC_CONF" in allocator_settings({"_RJEM_MALLOC_CONF": with_thp})


def test_a_users_values_are_kept() -> None:
    users = {"MALLOC_ARENA_MAX": "4", "_RJEM_MALLOC_CONF": "dirty_decay_ms:500,muzzy_decay_ms:1000,dirty_decay_ms:5"}
    assert allocator_settings(users) == {}


def test_the_command_sets_jemalloc_before_polars_is_imported() -> None:
    """A fresh interpreter that tunes first, then imports polars: polars' own defaults come first, ours last."""
    code = (
        "import os; from recovery.memory import tune_allocators; tune_allocators(); import polars; "
        "print(os.environ['_RJEM_MALLOC_CONF'])"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip().endswith(ALLOCATOR_ENV["_RJEM_MALLOC_CONF"])
    assert out.strip().startswith("dirty_decay_ms:500")
