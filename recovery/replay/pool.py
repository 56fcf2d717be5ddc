"""The one worker pool of replay and recover: partitions as tasks, on threads of this process or in spawned workers.

A task function takes ``(task, progress)`` and must live at module level (workers are spawned, so it is
pickled by name). Threads are the default: the readers (librdkafka, the compiled reader) and polars work
without the interpreter's lock, and one process's allocators serve every partition (no second copy of the
libraries and of the freed pages). Readers that decode in Python (kafka-python) run in spawned worker
processes instead, which report progress through a queue that the parent drains into its bars. Each thread or
worker keeps one reader per (source, client) for all its tasks (:func:`cached_reader`).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from recovery.config import usable_cores
from recovery.errors import ConfigError
from recovery.kafka.client import KAFKA_PYTHON, check_client, close_soon
from recovery.memory import ALLOCATOR_ENV, allocator_settings
from recovery.replay.progress import NoProgress, PartitionProgress, ProgressSink, QueueProgress
from recovery.replay.readers import Reader, reader_for
from recovery.source import KafkaSource, Source

T = TypeVar("T")
R = TypeVar("R")

# ``workers`` asking for the default: as many tasks at a time as usable cores, one more on threads when every task
# holds its partition in memory (such a task waits on the broker for part of its time: with a third thread on 2 cores
# the 1m recompute took 0.78-0.85 s instead of 0.82-0.95 s, and the 1m recover 490 MB instead of 460)
AUTO = 0

_QUEUE: Any = None
_READERS: dict[Any, Reader] = {}  # by (source, client, thread)
_READERS_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set while the tasks on threads are asked to stop (a failure, an interrupt)


class TaskStopped(Exception):
    """Raised in a task on a thread at its next :func:`stop_point` once the pool stops (nobody sees its result)."""


def stop_point() -> None:
    """Where a long task may stop: between batches and key groups. Threads cannot be interrupted like worker
    processes, so a failed task or Ctrl-C stops the others here instead of after their whole partition."""
    if _STOPPING.is_set():
        raise TaskStopped("stopped: another task failed or the run was interrupted")


@contextmanager
def _worker_environment() -> Iterator[None]:
    """The allocator settings (:data:`recovery.memory.ALLOCATOR_ENV`) in the environment the workers are spawned
    with, then the environment as it was."""
    saved = {name: os.environ.get(name) for name in ALLOCATOR_ENV}
    os.environ.update(allocator_settings(os.environ))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_workers(workers: int) -> int:
    """``workers`` when it is a number of workers or :data:`AUTO` (ConfigError otherwise)."""
    if workers < 0:
        raise ConfigError(f"workers must be >= 1, or {AUTO} for the default (the usable cores), got {workers}")
    return workers


def tasks_at_a_time(workers: int, *, threads: bool, held: bool) -> int:
    """How many tasks run at a time for ``workers``: the number given, or for :data:`AUTO` the usable cores, plus
    one on ``threads`` when the tasks hold their partitions in memory (``held``)."""
    if check_workers(workers) != AUTO:
        return workers
    return usable_cores() + (1 if threads and held else 0)


def decodes_in_python(source: Source, client: str) -> bool:
    """Whether ``client`` reads ``source`` in Python (kafka-python): its tasks then run in worker processes."""
    return isinstance(source, KafkaSource) and check_client(client, source) == KAFKA_PYTHON


def cached_reader(source: Source, client: str) -> Reader:
    """This thread's reader of ``source`` (opened on first use, kept for its next tasks)."""
    key = (source, client, threading.get_ident())
    reader = _READERS.get(key)
    if reader is None:
        reader = reader_for(source, client)
        with _READERS_LOCK:
            _READERS[key] = reader
    return reader


def close_readers() -> None:
    """Close the readers :func:`cached_reader` opened in this process (each on a thread of its own: closing a
    librdkafka consumer takes about 0.1 s, which need not hold up what comes next)."""
    with _READERS_LOCK:
        readers = list(_READERS.values())
        _READERS.clear()
    for reader in readers:
        close_soon(reader)


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
    processes: bool = False,
    fresh_process_per_task: bool = False,
    held: bool = False,
) -> list[R]:
    """``fn(task, progress)`` for every task, results in task order.

    One task, one worker or ``in_process`` (archive files: one thread reads them best) run here, one after the
    other; otherwise up to ``workers`` threads, or with ``processes`` up to ``workers`` spawned processes.
    ``fresh_process_per_task`` (processes only): what one task's frames left behind in the allocator is not
    carried into the next. ``held``: every task holds its partition in memory (see :func:`tasks_at_a_time`). A failed
    task stops the tasks not yet started; its error is raised.
    """
    workers = tasks_at_a_time(workers, threads=not processes, held=held)
    if workers <= 1 or len(tasks) <= 1 or in_process:
        try:
            return [fn(task, progress) for task in tasks]
        finally:
            close_readers()
    if not processes:
        try:
            with ThreadPoolExecutor(min(workers, len(tasks)), thread_name_prefix="recovery-task") as threads:
                try:
                    return _results([threads.submit(fn, task, progress) for task in tasks])
                except BaseException:
                    _STOPPING.set()  # the running tasks stop at their next stop point; the pool waits for them
                    raise
        finally:
            _STOPPING.clear()
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
        return _results([pool.submit(_in_worker, fn, task) for task in tasks])


def _results(futures: list[Future[R]]) -> list[R]:
    """The futures' results in order. The first error (or an interrupt) is raised as soon as it happens, with the
    futures not started cancelled."""
    try:
        pending: set[Future[R]] = set(futures)
        while pending:
            # woken up now and then: a signal (Ctrl-C) may have been delivered to another thread, and Python
            # runs its handler in the main thread only when that thread runs
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if not f.cancelled() and f.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            future.cancel()
        raise
