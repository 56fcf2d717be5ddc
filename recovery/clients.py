"""Kafka clients built from :class:`KafkaSettings`, with kafka-python errors turned into actionable ones.

Every client is a context manager (or closed by the caller); construction failures say whether the
cluster is unreachable, the credentials are wrong or access is denied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import kafka.errors as kerr
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from recovery.config import KafkaSettings
from recovery.errors import AuthError, BrokerError

T = TypeVar("T")

AUTH_ERRORS: tuple[type[BaseException], ...] = tuple(
    e
    for e in (
        getattr(kerr, "SaslAuthenticationFailedError", None),
        getattr(kerr, "AuthenticationFailedError", None),
        getattr(kerr, "AuthenticationMethodNotSupported", None),
    )
    if e is not None
)
AUTHZ_ERRORS: tuple[type[BaseException], ...] = (kerr.AuthorizationError,)
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = tuple(
    e
    for e in (
        getattr(kerr, "NoBrokersAvailable", None),
        kerr.KafkaConnectionError,
        kerr.MetadataEmptyBrokerList,
        kerr.NodeNotReadyError,
        kerr.BrokerNotAvailableError,
    )
    if e is not None
)


def translate(exc: BaseException, settings: KafkaSettings, action: str) -> BrokerError:
    """Map a kafka-python exception to a one-line, actionable :class:`BrokerError`."""
    where = settings.bootstrap_servers
    if isinstance(exc, AUTH_ERRORS):
        return AuthError(
            f"authentication to {where} failed while {action}",
            hint="check KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM",
        )
    if isinstance(exc, AUTHZ_ERRORS):
        return AuthError(
            f"not authorized while {action} on {where}: {type(exc).__name__}",
            hint="ask an operator for the ACL (topic WRITE/READ, transactional id, group) this step needs",
        )
    if isinstance(exc, UNREACHABLE_ERRORS):
        return BrokerError(
            f"no Kafka broker reachable at {where} while {action}",
            hint="start one with `make kafka-up` or check KAFKA_BOOTSTRAP_SERVERS",
        )
    if isinstance(exc, kerr.KafkaTimeoutError):
        return BrokerError(
            f"Kafka at {where} did not answer within {settings.request_timeout_ms // 1000} s while {action}",
            hint="is the broker up? start it with `make kafka-up` or check KAFKA_BOOTSTRAP_SERVERS, then retry",
        )
    return BrokerError(f"Kafka error while {action} on {where}: {type(exc).__name__}: {exc}")


def guarded(settings: KafkaSettings, action: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` and re-raise Kafka errors as :class:`BrokerError` with context."""
    try:
        return fn()
    except kerr.KafkaError as exc:
        raise translate(exc, settings, action) from exc
    except AssertionError as exc:  # kafka-python asserts on some SASL misconfigurations
        raise AuthError(f"invalid security settings while {action}: {exc}") from exc


def _base(settings: KafkaSettings) -> dict[str, Any]:
    kwargs = settings.client_kwargs()
    # fail fast when nothing answers instead of retrying forever
    kwargs.setdefault("bootstrap_timeout_ms", min(settings.request_timeout_ms, 10_000))
    kwargs.setdefault("reconnect_backoff_max_ms", 2_000)
    return kwargs


def new_admin(settings: KafkaSettings) -> KafkaAdminClient:
    """A connected admin client (closed by the caller)."""
    return guarded(settings, "connecting an admin client", lambda: KafkaAdminClient(**_base(settings)))


def new_consumer(settings: KafkaSettings, **config: Any) -> KafkaConsumer:
    """A consumer with no subscription (assign partitions yourself) unless ``topics`` is passed."""
    topics = config.pop("topics", ())
    kwargs = _base(settings)
    kwargs.update({"enable_auto_commit": False, "auto_offset_reset": "earliest"})
    kwargs.update(config)
    return guarded(settings, "connecting a consumer", lambda: KafkaConsumer(*topics, **kwargs))


def new_producer(settings: KafkaSettings, **config: Any) -> KafkaProducer:
    """A producer; idempotent by default (acks=all, enable_idempotence)."""
    kwargs = _base(settings)
    kwargs.update({"acks": "all", "enable_idempotence": True})
    kwargs.update(config)
    return guarded(settings, "connecting a producer", lambda: KafkaProducer(**kwargs))


@contextmanager
def admin(settings: KafkaSettings) -> Iterator[KafkaAdminClient]:
    """Admin client as a context manager."""
    client = new_admin(settings)
    try:
        yield client
    finally:
        client.close()


@contextmanager
def consumer(settings: KafkaSettings, **config: Any) -> Iterator[KafkaConsumer]:
    """Consumer as a context manager."""
    client = new_consumer(settings, **config)
    try:
        yield client
    finally:
        client.close()


@contextmanager
def producer(settings: KafkaSettings, **config: Any) -> Iterator[KafkaProducer]:
    """Producer as a context manager (flushed and closed on exit)."""
    client = new_producer(settings, **config)
    try:
        yield client
    finally:
        client.close(timeout=10)
