"""The one worker pool of replay and recover: partitions as tasks, in this process or in spawned workers.

A task function takes ``(task, progress)`` and must live at module level (workers are spawned, so it is
pickled by name). Workers report progress through a queue that the parent drains into its bars, and keep
one reader per (source, client) for all their tasks (:func:`cached_reader`).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from typing import Any, TypeVar

from recovery.replay.progress import NoProgress, PartitionProgress, ProgressSink, QueueProgress
from recovery.replay.readers import Reader, reader_for
from recovery.source import Source

T = TypeVar("T")
R = TypeVar("R")

_QUEUE: Any = None
_READERS: dict[Any, Reader] = {}

# The workers' allocators give freed memory back instead of keeping it for later: glibc (the compiled reader's
# Arrow buffers) with two arenas, polars' jemalloc with no decay delay. A partition's read leaves hundreds of MB
# of freed pages behind otherwise, which the next step's peak adds to (docs/benchmarks.md). Read at a process's
# start, so set for the spawned workers only; a value already in the environment is kept.
WORKER_ALLOCATOR_ENV = {"MALLOC_ARENA_MAX": "2", "_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0"}


@contextmanager
def _worker_environment() -> Iterator[None]:
    """:data:`WORKER_ALLOCATOR_ENV` in the environment the workers are spawned with, then as it was."""
    added = {k: v for k, v in WORKER_ALLOCATOR_ENV.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def trim_memory() -> None:
    """Return glibc's free heap pages to the system now (a no-op where the C library is not glibc)."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cached_reader(source: Source, client: str) -> Reader:
    """This process's reader of ``source`` (opened on first use, kept for the next tasks)."""
    reader = _READERS.get((source, client))
    if reader is None:
        reader = _READERS[(source, client)] = reader_for(source, client)
    return reader


def close_readers() -> None:
    """Close the readers :func:`cached_reader` opened in this process."""
    for reader in _READERS.values():
        reader.close()
    _READERS.clear()


def _init_worker(queue: Any) -> None:
    global _QUEUE
    _QUEUE = queue


def _in_worker(fn: Callable[[T, ProgressSink], R], task: T) -> R:
    progress: ProgressSink = QueueProgress(_QUEUE) if _QUEUE is not None else NoProgress()
    return fn(task, progress)


def run_tasks(
    fn: Callable[[T, ProgressSink], R],
    tasks: Sequence[T],
    *,
    workers: int,
    progress: PartitionProgress,
    in_process: bool = False,
    fresh_process_per_task: bool = False,
) -> list[R]:
    """``fn(task, progress)`` for every task, results in task order.

    One task, one worker or ``in_process`` (archive files: one process reads them best) run here; otherwise
    up to ``workers`` spawned processes. ``fresh_process_per_task``: what one task's frames left behind in
    the allocator is not carried into the next (peak memory is one task's, not the sum of their fragments).
    """
    if workers <= 1 or len(tasks) <= 1 or in_process:
        try:
            return [fn(task, progress) for task in tasks]
        finally:
            close_readers()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue() if progress.enabled else None
    with (
        _worker_environment(),
        ProcessPoolExecutor(
            min(workers, len(tasks)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(queue,),
            max_tasks_per_child=1 if fresh_process_per_task else None,
        ) as pool,
        progress.draining(queue) if queue is not None else nullcontext(),
    ):
        futures = [pool.submit(_in_worker, fn, task) for task in tasks]
        return [future.result() for future in futures]
