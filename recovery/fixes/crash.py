"""Test hooks of a publish: SIGKILL the publishing process at a named point (``RECOVERY_PUBLISH_CRASH``).

Points: ``after-begin`` (the plan is committed), ``after-sends:K`` (K corrections sent, counted over all
chunks, delivered inside the open transaction), ``before-commit:I`` / ``after-commit:I`` (chunk I; without
``:I`` the last chunk), ``after-verify``. Unset, the hooks do nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from recovery.kafka.client import TxProducer

CRASH_ENV = "RECOVERY_PUBLISH_CRASH"


def crash_point(point: str, chunk: int | None = None, last: bool = False) -> None:
    """Test hook: SIGKILL this process at a named point (RECOVERY_PUBLISH_CRASH).

    With ``chunk``, ``point:chunk`` matches, and the bare ``point`` matches the last chunk (``last``).
    """
    wanted = os.environ.get(CRASH_ENV)
    if wanted is None:
        return
    if wanted == point if chunk is None else (wanted == f"{point}:{chunk}" or (last and wanted == point)):
        os.kill(os.getpid(), signal.SIGKILL)


def crash_hook(tx: TxProducer) -> Callable[[int], None] | None:
    """Test hook ``after-sends:K``: after K sends, deliver them (inside the open transaction) and SIGKILL."""
    wanted = os.environ.get(CRASH_ENV, "")
    if not wanted.startswith("after-sends:"):
        return None
    count = int(wanted.split(":", 1)[1])

    def hook(sent: int) -> None:
        if sent == count:
            tx.flush()  # the records are in the log, inside the open transaction
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
