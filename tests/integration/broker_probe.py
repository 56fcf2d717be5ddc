"""Run by test_broker_lifecycle.py in a child pytest session (never collected on its own)."""

import os
from pathlib import Path

from recovery.kafka.broker import LocalBroker


def test_write_pid_then_fail(local_broker: LocalBroker) -> None:
    Path(os.environ["PROBE_PIDFILE"]).write_text(str(local_broker.pid()))
    if os.environ.get("PROBE_HANG"):
        import time

        time.sleep(600)
    raise AssertionError("deliberate failure: the broker must still be stopped")
