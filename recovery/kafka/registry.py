"""A local Schema Registry for tests and examples: Apicurio Registry with in-memory storage on 127.0.0.1.

``registry/pom.xml`` builds it (``make setup``). :class:`LocalRegistry` starts the runner jar on a free
loopback port with its files under ``home``, waits until the Confluent-compatible API answers, writes the
API's URL to ``<home>/url`` and stops the process by PID. Its schemas live in memory: a restart forgets them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from recovery.config import PROJECT_ROOT
from recovery.errors import LocalBrokerError
from recovery.kafka.broker import _alive, _die_with_parent
from recovery.kafka.storage import free_port

REGISTRY_DIR = PROJECT_ROOT / "registry"
RUNNER_JAR = REGISTRY_DIR / "target" / "recovery-schema-registry-1.0-runner.jar"
API_PATH = "/apis/ccompat/v7"


@dataclass
class LocalRegistry:
    """One Apicurio Registry process whose log, pid and URL live under ``home``."""

    home: Path

    @property
    def pid_file(self) -> Path:
        return self.home / "registry.pid"

    @property
    def url_file(self) -> Path:
        return self.home / "url"

    @property
    def log_file(self) -> Path:
        return self.home / "registry.log"

    def pid(self) -> int | None:
        """PID of the running registry, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def url(self) -> str | None:
        """The Confluent-compatible API's base URL if the registry is running."""
        if self.pid() is None or not self.url_file.is_file():
            return None
        return self.url_file.read_text().strip()

    def start(self, *, timeout_s: float = 90.0, tie_to_parent: bool = False, heap: str = "256m") -> str:
        """Start the registry and wait until its API answers; returns the API URL (``.../apis/ccompat/v7``)."""
        running = self.url()
        if running:
            return running
        if not RUNNER_JAR.is_file():
            raise LocalBrokerError(
                f"the Schema Registry jar is missing: {RUNNER_JAR}", hint="run `make setup` (it builds it with Maven)"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "tmp").mkdir(exist_ok=True)
        port = free_port()
        command = [
            "java",
            f"-Xmx{heap}",
            "-XX:TieredStopAtLevel=1",  # start-up time matters more than peak speed here
            "-XX:+UseSerialGC",
            f"-Djava.io.tmpdir={self.home / 'tmp'}",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={port}",
            "-jar",
            str(RUNNER_JAR),
        ]
        with self.log_file.open("wb") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.home,
                preexec_fn=_die_with_parent if tie_to_parent else None,
                start_new_session=not tie_to_parent,
            )
        self.pid_file.write_text(str(proc.pid))
        url = f"http://127.0.0.1:{port}{API_PATH}"
        try:
            self._wait_ready(proc, url, timeout_s)
        except BaseException:
            self.stop()
            raise
        self.url_file.write_text(url)
        return url

    def _wait_ready(self, proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LocalBrokerError(
                    f"the Schema Registry exited with code {proc.returncode} during start-up; "
                    f"last log lines:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{url}/subjects", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise LocalBrokerError(
            f"the Schema Registry did not answer within {timeout_s:.0f} s; last log lines:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Stop the registry (SIGTERM, then SIGKILL after ``timeout_s``); True if one was running."""
        pid = self.pid()
        self.url_file.unlink(missing_ok=True)
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
