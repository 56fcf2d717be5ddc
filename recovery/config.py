"""Connection settings: the one place that reads the environment (bootstrap servers, security).

Values come from keyword overrides first, then ``KAFKA_*`` environment variables, then the address the
project's local broker wrote when it started (``make kafka-up``). Secrets are wrapped in :class:`Secret`
so they never appear in a repr, a log line, a notebook or an error message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from recovery.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# compression of the record batches the toolkit's producers write (both clients read every codec)
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")

# environment variable -> KafkaSettings field
ENV_VARS: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "bootstrap_servers",
    "KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SASL_USERNAME": "sasl_username",
    "KAFKA_SASL_PASSWORD": "sasl_password",
    "KAFKA_SSL_CAFILE": "ssl_cafile",
    "KAFKA_SSL_CERTFILE": "ssl_certfile",
    "KAFKA_SSL_KEYFILE": "ssl_keyfile",
    "KAFKA_SSL_PASSWORD": "ssl_password",
    "KAFKA_REQUEST_TIMEOUT_MS": "request_timeout_ms",
    "KAFKA_COMPRESSION": "compression",
    "KAFKA_TRANSACTION_TIMEOUT_MS": "transaction_timeout_ms",
}

# A publish transaction (one chunk of a fix set) must end within this; the broker then aborts it, so a
# publish killed mid-chunk holds back read_committed readers for at most this plus the broker's abort check
# interval (transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by default).
TRANSACTION_TIMEOUT_MS = 45_000
MAX_TRANSACTION_TIMEOUT_MS = 60_000


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count): the default of
    ``--workers``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def local_broker_home() -> Path:
    """Directory of the project's local broker (data, log, pid, bootstrap address)."""
    return Path(os.environ.get("RECOVERY_KAFKA_HOME", PROJECT_ROOT / ".kafka-local"))


class Secret:
    """A string that prints as ``***`` everywhere except through :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable for worker processes, still never printed
        return (Secret, (self._value,))


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach a Kafka cluster. Build with :meth:`from_env`; validated on construction."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: Secret | None = field(default=None, repr=False)
    request_timeout_ms: int = 15_000
    transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS
    client_id: str = "recovery"
    compression: str | None = None  # None: each producer's own default; else one of COMPRESSIONS

    def __post_init__(self) -> None:
        servers = [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]
        if not servers:
            raise ConfigError("bootstrap servers are empty", hint="set KAFKA_BOOTSTRAP_SERVERS=host:port")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(
                    f"bootstrap server {server!r} is not host:port",
                    hint="e.g. KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092",
                )
        protocol = self.security_protocol.upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"unknown security protocol {self.security_protocol!r}",
                hint=f"use one of {', '.join(SECURITY_PROTOCOLS)}",
            )
        object.__setattr__(self, "security_protocol", protocol)
        if protocol.startswith("SASL"):
            if self.sasl_mechanism is None or self.sasl_mechanism.upper() not in SASL_MECHANISMS:
                raise ConfigError(
                    f"{protocol} needs a SASL mechanism, got {self.sasl_mechanism!r}",
                    hint=f"set KAFKA_SASL_MECHANISM to one of {', '.join(SASL_MECHANISMS)}",
                )
            object.__setattr__(self, "sasl_mechanism", self.sasl_mechanism.upper())
            if not self.sasl_username or self.sasl_password is None:
                raise ConfigError(
                    f"{protocol} needs a user name and a password",
                    hint="set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
                )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{name} {path!r} does not exist", hint="give the path of a PEM file")
        if self.request_timeout_ms < 1000:
            raise ConfigError("request_timeout_ms must be at least 1000")
        if self.compression is not None:
            codec = str(self.compression).strip().lower()
            if codec not in COMPRESSIONS:
                raise ConfigError(
                    f"unknown compression {self.compression!r}",
                    hint=f"set KAFKA_COMPRESSION (or compression=) to one of {', '.join(COMPRESSIONS)}",
                )
            object.__setattr__(self, "compression", codec)
        if not 1000 <= self.transaction_timeout_ms <= MAX_TRANSACTION_TIMEOUT_MS:
            raise ConfigError(
                f"transaction_timeout_ms must be between 1000 and {MAX_TRANSACTION_TIMEOUT_MS}, "
                f"got {self.transaction_timeout_ms}",
                hint="a publish transaction holds back read_committed readers until it ends: keep it short",
            )

    @classmethod
    def from_env(
        cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> KafkaSettings:
        """Settings from ``overrides`` (field names), then ``KAFKA_*`` variables, then the local broker."""
        env = os.environ if env is None else env
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            if env.get(var):
                values[name] = env[var]
        for name, value in (overrides or {}).items():
            if name not in known:
                raise ConfigError(
                    f"unknown connection setting {name!r}", hint=f"known settings: {', '.join(sorted(known))}"
                )
            if value is not None:
                values[name] = value
        if "bootstrap_servers" not in values:
            sasl = str(values.get("security_protocol", "")).upper().startswith("SASL")
            address = local_broker_home() / ("bootstrap_sasl" if sasl else "bootstrap")
            if not address.is_file():
                start = "make kafka-up SASL=1" if sasl else "make kafka-up"
                raise ConfigError(
                    "no Kafka cluster configured",
                    hint=f"run `{start}` to start the local broker, or set KAFKA_BOOTSTRAP_SERVERS=host:port",
                )
            values["bootstrap_servers"] = address.read_text().strip()
        for secret in ("sasl_password", "ssl_password"):
            if secret in values and not isinstance(values[secret], Secret):
                values[secret] = Secret(str(values[secret]))
        for name, var in (
            ("request_timeout_ms", "KAFKA_REQUEST_TIMEOUT_MS"),
            ("transaction_timeout_ms", "KAFKA_TRANSACTION_TIMEOUT_MS"),
        ):
            if name in values:
                try:
                    values[name] = int(values[name])
                except ValueError:
                    raise ConfigError(f"{var} must be an integer (milliseconds)") from None
        return cls(**values)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python clients (the only place secrets are revealed)."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
            "client_id": self.client_id,
        }
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.reveal()
        if self.security_protocol.endswith("SSL"):
            kwargs["ssl_cafile"] = self.ssl_cafile
            kwargs["ssl_certfile"] = self.ssl_certfile
            kwargs["ssl_keyfile"] = self.ssl_keyfile
            if self.ssl_password is not None:
                kwargs["ssl_password"] = self.ssl_password.reveal()
        return kwargs

    def describe(self) -> str:
        """One line for logs and reports, without secrets."""
        auth = f", user {self.sasl_username} ({self.sasl_mechanism})" if self.sasl_username else ""
        codec = f", {self.compression} compression" if self.compression else ""
        return f"{self.bootstrap_servers} [{self.security_protocol}{auth}{codec}]"


# Schema Registry basic-auth credentials: from the environment only, never from a spec file or a URL.
REGISTRY_USER_VAR = "SCHEMA_REGISTRY_USERNAME"
REGISTRY_PASSWORD_VAR = "SCHEMA_REGISTRY_PASSWORD"


@dataclass(frozen=True)
class RegistryCredentials:
    """Basic-auth user and password for a Schema Registry (the password prints as ``***``)."""

    username: str
    password: Secret = field(repr=False)


def registry_credentials(env: Mapping[str, str] | None = None) -> RegistryCredentials | None:
    """Credentials from ``SCHEMA_REGISTRY_USERNAME``/``SCHEMA_REGISTRY_PASSWORD``, or None when neither is set."""
    env = os.environ if env is None else env
    user, password = env.get(REGISTRY_USER_VAR), env.get(REGISTRY_PASSWORD_VAR)
    if not user and not password:
        return None
    if not user or password is None:
        raise ConfigError(
            "Schema Registry credentials are incomplete",
            hint=f"set both {REGISTRY_USER_VAR} and {REGISTRY_PASSWORD_VAR}, or neither",
        )
    return RegistryCredentials(user, Secret(password))
