"""The project's local Apache Kafka broker: one KRaft node (broker + controller) on 127.0.0.1.

The jars come from ``kafka/pom.xml`` (``make setup``). :class:`LocalBroker` keeps its data: it formats
storage (with a fresh cluster id, recorded in ``<home>/cluster.id``) only when the data directory is empty;
otherwise it starts on the existing data and cluster id, also after an unclean stop (Kafka recovers its
logs). It listens on the ports of its last run when they are free, else on new free loopback ports, waits
until it answers a metadata request, writes the bootstrap address to ``<home>/bootstrap`` (where the CLI
finds it) and stops the process by PID. Storage it cannot use (no or a damaged ``meta.properties``, a
cluster id other than the recorded one) is a :class:`~recovery.errors.LocalBrokerError`, never a re-format;
only :meth:`LocalBroker.wipe` deletes data.

With ``sasl=True`` the broker also gets a SASL_PLAINTEXT listener (SCRAM-SHA-512) on another loopback port,
written to ``<home>/bootstrap_sasl``, and Kafka's standard KRaft authorizer. The authorizer then governs
the SASL users through ACLs; the PLAINTEXT listener stays as it is (loopback only) because its principal,
``User:ANONYMOUS``, is a super user, as Kafka requires for a PLAINTEXT inter-broker and controller
listener. SCRAM credentials are created through the admin API on that listener (the client salts the
password, so it never appears on a command line or in a file).
"""

from __future__ import annotations

import base64
import ctypes
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from recovery.config import PROJECT_ROOT, Secret, local_broker_home
from recovery.errors import LocalBrokerError
from recovery.kafka.storage import choose_ports, previous_ports, storage_cluster_id

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

SCRAM_MECHANISM = "SCRAM-SHA-512"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"

# Replaces the listener lines of SERVER_PROPERTIES and adds authentication and authorization.
# User:ANONYMOUS is the principal of every PLAINTEXT connection, including the broker's own requests to its
# controller: it must be a super user, so the loopback PLAINTEXT listener keeps full access while SASL users
# get exactly what their ACLs allow (no ACL, no access: allow.everyone.if.no.acl.found=false).
SASL_PROPERTIES = """\
listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms={mechanism}
listener.name.sasl_plaintext.sasl.enabled.mechanisms={mechanism}
listener.name.sasl_plaintext.{mechanism_lower}.sasl.jaas.config={login_module} required;
authorizer.class.name={authorizer}
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:{admin}
"""


def server_properties(
    *, port: int, controller_port: int, data_dir: Path, sasl_port: int | None = None, sasl_admin: str = "admin"
) -> str:
    """The broker's server.properties: plaintext only, or with the SASL listener and the authorizer."""
    text = SERVER_PROPERTIES.format(port=port, controller_port=controller_port, data_dir=data_dir)
    if sasl_port is None:
        return text
    extra = SASL_PROPERTIES.format(
        port=port,
        sasl_port=sasl_port,
        controller_port=controller_port,
        mechanism=SCRAM_MECHANISM,
        mechanism_lower=SCRAM_MECHANISM.lower(),
        authorizer=STANDARD_AUTHORIZER,
        login_module=SCRAM_LOGIN_MODULE,
        admin=sasl_admin,
    )
    replaced = {line.split("=", 1)[0] for line in extra.splitlines()}
    kept = [line for line in text.splitlines() if line.split("=", 1)[0] not in replaced]
    return "\n".join(kept) + "\n" + extra


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:  # like Kafka's Uuid.randomUuid: an id starting with '-' would read as a command-line flag
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


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
    """A single-node KRaft broker whose state (data, log, pid, address) lives under ``home``.

    ``sasl`` adds the SCRAM-SHA-512 listener and the authorizer; ``sasl_admin`` names the SASL super user
    (the principal the toolkit's own setup uses on that listener).
    """

    home: Path
    sasl: bool = False
    sasl_admin: str = "admin"
    formatted: bool = field(default=False, init=False)  # the last start formatted empty storage
    moved_from: int | None = field(default=None, init=False)  # the last start's previous port, when taken

    @property
    def cluster_id_file(self) -> Path:
        return self.home / "cluster.id"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

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
    def sasl_bootstrap_file(self) -> Path:
        return self.home / "bootstrap_sasl"

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

    def sasl_bootstrap(self) -> str | None:
        """The SASL_PLAINTEXT listener's address if the broker runs with ``sasl``."""
        if self.pid() is None or not self.sasl_bootstrap_file.is_file():
            return None
        return self.sasl_bootstrap_file.read_text().strip()

    def start(
        self,
        *,
        timeout_s: float = 60.0,
        tie_to_parent: bool = False,
        heap: str = "512m",
        sasl_users: Mapping[str, str | Secret] | None = None,
    ) -> str:
        """Format fresh storage, start the broker and wait until it serves metadata; returns host:port.

        ``tie_to_parent`` makes the broker die with the calling process (used by test sessions).
        ``sasl_users`` (name -> password, needs ``sasl``) get SCRAM-SHA-512 credentials before this returns;
        the SASL address is then in :meth:`sasl_bootstrap`.
        """
        running = self.bootstrap()
        if running:
            return running
        if sasl_users and not self.sasl:
            raise LocalBrokerError("sasl_users need a broker started with sasl=True")
        for name in [self.sasl_admin, *(sasl_users or {})]:
            if not USER_NAME.fullmatch(name):
                raise LocalBrokerError(f"SASL user name {name!r} is not allowed", hint="use letters, digits, . _ -")
        self.home.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            try:
                return self._start_once(timeout_s, tie_to_parent, heap, sasl_users)
            except LocalBrokerError:
                # another process may have taken one of the free ports between probing and binding
                if attempt == 2 or "Address already in use" not in self.log_tail(200):
                    raise
        raise AssertionError("unreachable")

    def storage_cluster_id(self) -> str | None:
        """The cluster id of the existing storage; None when the data directory is empty or missing.

        Storage that cannot be used raises :class:`LocalBrokerError` and is left as it is.
        """
        return storage_cluster_id(self.data_dir, self.cluster_id_file)

    def _ports(self) -> tuple[int, int, int]:
        """The ports of the last run when free (so clients keep their address), else new free ones."""
        previous = previous_ports(self.properties_file)
        port, controller_port, sasl_port = choose_ports(previous, ("port", "controller_port", "sasl_port"))
        old = previous.get("port")
        self.moved_from = old if old is not None and old != port else None
        return port, controller_port, sasl_port

    def wipe(self) -> bool:
        """Stop the broker and delete its data (every topic); True if there was data to delete."""
        self.stop()
        existed = self.data_dir.exists()
        if existed:
            subprocess.run(["rm", "-rf", str(self.data_dir)], check=True)
        for path in (self.cluster_id_file, self.properties_file):
            path.unlink(missing_ok=True)
        return existed

    def _start_once(
        self, timeout_s: float, tie_to_parent: bool, heap: str, sasl_users: Mapping[str, str | Secret] | None
    ) -> str:
        cluster_id = self.storage_cluster_id()  # before anything is written: unusable storage stays untouched
        port, controller_port, sasl_port = self._ports()
        self.sasl_bootstrap_file.unlink(missing_ok=True)
        properties = self.properties_file
        properties.write_text(
            server_properties(
                port=port,
                controller_port=controller_port,
                data_dir=self.data_dir,
                sasl_port=sasl_port if self.sasl else None,
                sasl_admin=self.sasl_admin,
            )
        )
        self.formatted = cluster_id is None
        if cluster_id is None:
            self._format(properties)
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
        deadline = time.monotonic() + timeout_s
        try:
            self._wait_ready(proc, bootstrap, timeout_s)
            if self.sasl:
                sasl_address = f"127.0.0.1:{sasl_port}"
                self._add_scram_users(bootstrap, sasl_users or {})
                if sasl_users:
                    self._wait_sasl_ready(proc, sasl_address, sasl_users, deadline)
                self.sasl_bootstrap_file.write_text(sasl_address)
        except BaseException:
            self.stop()
            raise
        self.bootstrap_file.write_text(bootstrap)
        return bootstrap

    def _format(self, properties: Path) -> None:
        """Format empty storage with a fresh cluster id and record the id next to it."""
        cluster_id = new_cluster_id()
        fmt = subprocess.run(
            java_command("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties), heap="256m"),
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise LocalBrokerError(f"formatting KRaft storage failed: {(fmt.stderr or fmt.stdout).strip()[-400:]}")
        self.cluster_id_file.write_text(cluster_id + "\n")

    def _add_scram_users(self, bootstrap: str, users: Mapping[str, str | Secret]) -> None:
        """Create SCRAM credentials through the PLAINTEXT listener (its principal is a super user)."""
        if not users:
            return
        from kafka.admin import KafkaAdminClient, UserScramCredentialUpsertion

        upserts = [
            UserScramCredentialUpsertion(name, SCRAM_MECHANISM, _reveal(password)) for name, password in users.items()
        ]
        client = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, bootstrap_timeout_ms=5000)
        try:
            errors = {name: e for name, e in client.alter_user_scram_credentials(upserts).items() if e}
        finally:
            client.close()
        if errors:
            raise LocalBrokerError(f"creating SCRAM credentials failed: {errors}")

    def _wait_sasl_ready(
        self, proc: subprocess.Popen[bytes], address: str, users: Mapping[str, str | Secret], deadline: float
    ) -> None:
        """Wait until a SASL user can log in: credentials reach the broker's metadata shortly after the write."""
        from kafka.admin import KafkaAdminClient

        name = self.sasl_admin if self.sasl_admin in users else next(iter(users))
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LocalBrokerError(
                    f"the broker exited with code {proc.returncode} during start-up; last log lines:\n{self.log_tail()}"
                )
            try:
                client = KafkaAdminClient(
                    bootstrap_servers=address,
                    security_protocol="SASL_PLAINTEXT",
                    sasl_mechanism=SCRAM_MECHANISM,
                    sasl_plain_username=name,
                    sasl_plain_password=_reveal(users[name]),
                    request_timeout_ms=3000,
                    bootstrap_timeout_ms=2000,
                )
                client.close()
                return
            except Exception:
                time.sleep(0.25)
        raise LocalBrokerError(f"SASL user {name!r} could not log in at {address}; last log lines:\n{self.log_tail()}")

    def _wait_ready(self, proc: subprocess.Popen[bytes], bootstrap: str, timeout_s: float) -> None:
        from kafka.admin import KafkaAdminClient

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
        self.sasl_bootstrap_file.unlink(missing_ok=True)
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


USER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _reveal(password: str | Secret) -> str:
    return password.reveal() if isinstance(password, Secret) else password


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
