"""Progress bars per partition (events, events/s, ETA) for long replays and publishes.

Shown only on a terminal: disabled when stderr is not a TTY (CI, notebooks, pipes) or when ``quiet``.
Worker threads update the bars directly; worker processes report through a queue that
:class:`PartitionProgress` drains in a thread.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.progress import Progress, Task


class ProgressSink(Protocol):
    """Where a reader reports progress: ``update(partition, done, total)`` with absolute counts."""

    def update(self, partition: int, done: int, total: int) -> None: ...


class NoProgress:
    """A sink that ignores updates."""

    def update(self, partition: int, done: int, total: int) -> None:
        return None


class QueueProgress:
    """A sink for worker processes: forwards updates to the parent's queue."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def update(self, partition: int, done: int, total: int) -> None:
        self.queue.put((partition, done, total))


def _bars() -> Progress:
    """The bars' layout (rich is imported only when bars are shown: 15 ms of a command's start)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
    from rich.text import Text

    def rate_of(task: Task) -> float | None:
        """Average events/s since the task started (updates come per batch, too few for rich's own estimate)."""
        elapsed = task.finished_time if task.finished else task.elapsed
        return task.completed / elapsed if elapsed and task.completed else None

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            rate = rate_of(task)
            return Text(f"{rate:,.0f} ev/s" if rate else "- ev/s", style="progress.data.speed")

    class EtaColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            rate = rate_of(task)
            if task.finished or task.total is None:
                return Text("done" if task.finished else "", style="progress.elapsed")
            if not rate:
                return Text("ETA -", style="progress.remaining")
            left_s = int((task.total - task.completed) / rate)
            eta = f"ETA {left_s // 3600}:{left_s // 60 % 60:02d}:{left_s % 60:02d}"
            return Text(eta, style="progress.remaining")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        EtaColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def progress_enabled(quiet: bool) -> bool:
    """Bars only for a person at a terminal."""
    return not quiet and sys.stderr.isatty()


class PartitionProgress:
    """One bar per ``topic[partition]``; a no-op when disabled."""

    def __init__(self, label: str, *, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self._progress: Progress | None = None
        self._tasks: dict[int, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> PartitionProgress:
        if self.enabled:
            self._progress = _bars()
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, partition: int, done: int, total: int) -> None:
        if self._progress is None:
            return
        with self._lock:
            task = self._tasks.get(partition)
            if task is None:
                task = self._progress.add_task(f"{self.label}[{partition}]", total=max(total, done))
                self._tasks[partition] = task
            self._progress.update(task, completed=done, total=max(total, done))

    @contextmanager
    def draining(self, queue: Any) -> Iterator[None]:
        """Apply updates sent by worker processes through ``queue`` while the block runs."""
        stop = object()

        def drain() -> None:
            while True:
                item = queue.get()
                if item is None or item is stop:
                    return
                self.update(*item)

        thread = threading.Thread(target=drain, name="progress-drain", daemon=True)
        thread.start()
        try:
            yield
        finally:
            queue.put(None)
            thread.join(timeout=5)
