"""The process's memory allocators: settings that give freed memory back soon, and a trim of glibc's free pages.

A partition's recovery allocates and frees hundreds of MB per step (a replayed batch, a key group's joins). Left
to their defaults, glibc keeps one arena per thread and polars' jemalloc keeps freed pages for a second, so the
pages of one step add to the next step's peak and two partitions' threads hold two sets of them
(docs/benchmarks.md). :func:`tune_allocators` is called first thing by the ``recovery`` command.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping
from contextlib import suppress

# glibc: at most this many arenas (one per thread otherwise, each keeping its own free pages)
ARENAS = 2
# polars' jemalloc: freed pages go back after 30 ms (polars' own default: 500 ms dirty, 1 s muzzy). Measured on
# the 10M incident: decay 0 costs ~40 % more CPU in page faults; 30 ms keeps nearly all the memory gain.
JEMALLOC_CONF = "dirty_decay_ms:30,muzzy_decay_ms:0"
# the same settings as environment variables, for processes spawned by this one (read at their start)
ALLOCATOR_ENV = {"MALLOC_ARENA_MAX": str(ARENAS), "_RJEM_MALLOC_CONF": JEMALLOC_CONF}
# What importing polars puts in _RJEM_MALLOC_CONF by itself (its decay delays, with POLARS_THP=1 huge pages), in
# front of any value the user set: a value of these options alone is polars', not the user's.
_POLARS_JEMALLOC_OPTIONS = {"dirty_decay_ms:500", "muzzy_decay_ms:1000", "thp:always", "metadata_thp:always"}
_M_ARENA_MAX = -8  # mallopt's parameter number for the arena limit (malloc.h)


def allocator_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings of :data:`ALLOCATOR_ENV` that ``environ`` does not set itself (a user's value is kept)."""
    settings = {}
    for name, value in ALLOCATOR_ENV.items():
        current = environ.get(name)
        polars_own = name == "_RJEM_MALLOC_CONF" and current is not None
        if current is None or (polars_own and set(current.split(",")) <= _POLARS_JEMALLOC_OPTIONS):
            settings[name] = value
    return settings


def tune_allocators() -> None:
    """Apply :data:`ALLOCATOR_ENV` to this process, where the environment does not set them already.

    jemalloc reads its settings when polars is imported, so this must run before that to take effect on it;
    glibc's arena limit applies to the threads started afterwards.
    """
    settings = allocator_settings(os.environ)
    if "_RJEM_MALLOC_CONF" in settings and "polars" not in sys.modules:
        os.environ["_RJEM_MALLOC_CONF"] = settings["_RJEM_MALLOC_CONF"]
    if "MALLOC_ARENA_MAX" in settings:
        with suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, ARENAS)


def trim_memory() -> None:
    """Return glibc's free heap pages to the system now (a no-op where the C library is not glibc)."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
