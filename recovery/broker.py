"""The project's local Apache Kafka broker: one KRaft node (broker + controller) on 127.0.0.1.

The jars come from ``kafka/pom.xml`` (``make setup``). :class:`LocalBroker` formats storage with a fresh
cluster id, starts ``kafka.Kafka`` on free loopback ports, waits until it answers a metadata request,
writes the bootstrap address to ``<home>/bootstrap`` and stops the process by PID.
"""

from __future__ import annotations

import base64
import ctypes
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from recovery.config import PROJECT_ROOT, local_broker_home
from recovery.errors import LocalBrokerError

KAFKA_DIR = PROJECT_ROOT / "kafka"
LIB_DIR = KAFKA_DIR / "lib"

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data_dir}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
log.segment.bytes=268435456
log.cleaner.backoff.ms=1000
log.cleaner.min.compaction.lag.ms=0
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM us when the parent (a test session) dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def java_command(main_class: str, *args: str, heap: str = "512m") -> list[str]:
    """The ``java`` command line that runs ``main_class`` from the project's Kafka jars."""
    if not (LIB_DIR / "kafka_2.13-4.3.1.jar").is_file():
        raise LocalBrokerError(
            f"the Kafka jars are missing in {LIB_DIR}", hint="run `make setup` (it fetches them with Maven)"
        )
    return [
        "java",
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
        "-cp",
        f"{LIB_DIR}/*",
        main_class,
        *args,
    ]


@dataclass
class LocalBroker:
    """A single-node KRaft broker whose state (data, log, pid, address) lives under ``home``."""

    home: Path

    @classmethod
    def default(cls) -> LocalBroker:
        return cls(local_broker_home())

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def bootstrap_file(self) -> Path:
        return self.home / "bootstrap"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def pid(self) -> int | None:
        """PID of the running broker, or None (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        try:  # a recycled pid that is not java is not ours
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"kafka.Kafka" not in cmdline:
                return None
        except OSError:
            pass
        return pid

    def bootstrap(self) -> str | None:
        """The broker's address if it is running."""
        if self.pid() is None or not self.bootstrap_file.is_file():
            return None
        return self.bootstrap_file.read_text().strip()

    def start(self, *, timeout_s: float = 60.0, tie_to_parent: bool = False, heap: str = "512m") -> str:
        """Format fresh storage, start the broker and wait until it serves metadata; returns host:port.

        ``tie_to_parent`` makes the broker die with the calling process (used by test sessions).
        """
        running = self.bootstrap()
        if running:
            return running
        self.home.mkdir(parents=True, exist_ok=True)
        port, controller_port = free_port(), free_port()
        while controller_port == port:
            controller_port = free_port()
        if self.data_dir.exists():
            subprocess.run(["rm", "-rf", str(self.data_dir)], check=True)
        properties = self.home / "server.properties"
        properties.write_text(
            SERVER_PROPERTIES.format(port=port, controller_port=controller_port, data_dir=self.data_dir)
        )
        fmt = subprocess.run(
            java_command(
                "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(properties), heap="256m"
            ),
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise LocalBrokerError(f"formatting KRaft storage failed: {(fmt.stderr or fmt.stdout).strip()[-400:]}")
        log = self.log_file.open("wb")
        proc = subprocess.Popen(
            java_command("kafka.Kafka", str(properties), heap=heap),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.home,
            preexec_fn=_die_with_parent if tie_to_parent else None,
            start_new_session=not tie_to_parent,
        )
        log.close()
        self.pid_file.write_text(str(proc.pid))
        bootstrap = f"127.0.0.1:{port}"
        try:
            self._wait_ready(proc, bootstrap, timeout_s)
        except BaseException:
            self.stop()
            raise
        self.bootstrap_file.write_text(bootstrap)
        return bootstrap

    def _wait_ready(self, proc: subprocess.Popen[bytes], bootstrap: str, timeout_s: float) -> None:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LocalBrokerError(
                    f"the broker exited with code {proc.returncode} during start-up; last log lines:\n{self.log_tail()}"
                )
            try:
                client = KafkaAdminClient(
                    bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=2000
                )
                try:
                    client.describe_cluster()
                    return
                finally:
                    client.close()
            except Exception:
                time.sleep(0.25)
        raise LocalBrokerError(
            f"the broker did not answer a metadata request within {timeout_s:.0f} s; last log lines:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout_s``); True if one was running."""
        pid = self.pid()
        self.bootstrap_file.unlink(missing_ok=True)
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL the broker, keeping its data, port and pid file (to test crash recovery)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)

    def restart(self, *, timeout_s: float = 60.0, tie_to_parent: bool = False) -> str:
        """Start again on the same data directory and ports (after :meth:`kill`)."""
        properties = self.home / "server.properties"
        bootstrap = self.bootstrap_file.read_text().strip()
        log = self.log_file.open("ab")
        proc = subprocess.Popen(
            java_command("kafka.Kafka", str(properties)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.home,
            preexec_fn=_die_with_parent if tie_to_parent else None,
            start_new_session=not tie_to_parent,
        )
        log.close()
        self.pid_file.write_text(str(proc.pid))
        self._wait_ready(proc, bootstrap, timeout_s)
        return bootstrap

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        return state != "Z"
    except (OSError, IndexError):
        return True
