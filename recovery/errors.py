"""The exception hierarchy: one root, a few subclasses that carry context and say what to do next.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``; a traceback is shown only
for bugs (anything that is not a :class:`RecoveryError`).
"""

from __future__ import annotations


class RecoveryError(Exception):
    """Root of every error the toolkit raises on purpose (user mistakes, unreachable brokers, bad data)."""

    exit_code = 2
    retriable = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class ConfigError(RecoveryError):
    """A configuration value, parameter or spec file is wrong."""


class SpecError(ConfigError):
    """The pipeline spec (pipeline.toml) is invalid."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message, hint=hint)


class BrokerError(RecoveryError):
    """The Kafka cluster cannot be reached or refused a request."""

    retriable = True


class LocalBrokerError(RecoveryError):
    """The project's local broker could not be started or stopped."""


class TopicError(RecoveryError):
    """A topic is missing or misconfigured."""

    def __init__(self, message: str, *, topic: str, hint: str | None = None) -> None:
        self.topic = topic
        super().__init__(message, hint=hint)


class AuthError(BrokerError):
    """Authentication or authorization failed."""

    retriable = False


class DataError(RecoveryError):
    """Input data (a range, a file, a fix set) is empty, missing or inconsistent."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        self.path = path
        super().__init__(message, hint=hint)


class ApprovalError(RecoveryError):
    """A fix set is not approved, or its approval does not match its digest."""


class RegistryError(RecoveryError):
    """A Schema Registry cannot be reached, refused a request or answered something unexpected."""

    retriable = True

    def __init__(self, message: str, *, url: str, hint: str | None = None, retriable: bool = True) -> None:
        self.url = url
        self.retriable = retriable
        super().__init__(message, hint=hint)
