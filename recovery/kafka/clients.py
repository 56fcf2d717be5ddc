"""Kafka clients built from :class:`KafkaSettings`, with kafka-python errors turned into actionable ones (what
every client shares without kafka-python is in :mod:`recovery.kafka.common`).

Every client is a context manager (or closed by the caller); construction failures say whether the
cluster is unreachable, the credentials are wrong or access is denied.

Every wait is bounded, so a stopped or unreachable broker gives a :class:`BrokerError` instead of a hang:

- building a client: ``bootstrap_timeout_s(settings)`` (10 s by default); wrong SASL credentials fail
  after one login attempt (:func:`recovery.kafka.sasl.check_login`, well under a second on a reachable broker);
- a request (metadata, offsets, admin calls): ``request_timeout_ms`` (15 s by default, KAFKA_REQUEST_TIMEOUT_MS);
- a producer's ``send`` waiting for metadata or buffer space, and ``init_transactions``: ``max_block_ms``
  (= request timeout); a record's delivery, retries included: ``delivery_timeout_ms`` (2 x request timeout);
  :func:`deliver` flushes and checks every send within that bound;
- reading up to snapshotted end offsets: :func:`poll_until_end` raises when no partition moves for
  ``stall_timeout_s`` (2 x request timeout), because ``poll`` itself returns nothing, forever, from a dead broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import kafka.errors as kerr
from kafka.admin import KafkaAdminClient
from kafka.consumer import KafkaConsumer
from kafka.producer import KafkaProducer
from kafka.structs import TopicPartition

from recovery.config import KafkaSettings
from recovery.errors import AuthError, BrokerError
from recovery.kafka.common import bootstrap_timeout_s, stall_timeout_s
from recovery.kafka.sasl import check_login

T = TypeVar("T")

AUTH_ERRORS: tuple[type[BaseException], ...] = tuple(
    e
    for e in (
        getattr(kerr, "SaslAuthenticationFailedError", None),
        getattr(kerr, "AuthenticationFailedError", None),
        getattr(kerr, "AuthenticationMethodNotSupported", None),
        getattr(kerr, "IllegalSaslStateError", None),
        getattr(kerr, "UnsupportedSaslMechanismError", None),
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
    # kafka-python wraps some authorization failures (e.g. InitProducerId refused for a user without any
    # WRITE permission) in a plain KafkaError whose message names the Kafka error class
    if isinstance(exc, AUTHZ_ERRORS) or "AuthorizationFailed" in str(exc):
        return AuthError(
            f"not authorized while {action} on {where}{_as_user(settings)}: {_reason(exc)}",
            hint="ask an operator for the ACL (topic WRITE/READ, transactional id, group) this step needs",
        )
    if isinstance(exc, UNREACHABLE_ERRORS):
        return BrokerError(
            f"no Kafka broker reachable at {where} while {action}",
            hint="start one with `make kafka-up` or check KAFKA_BOOTSTRAP_SERVERS",
        )
    if isinstance(exc, kerr.KafkaTimeoutError | kerr.RequestTimedOutError):
        waited_s = bootstrap_timeout_s(settings) if "bootstrap" in str(exc) else settings.request_timeout_ms / 1000
        return BrokerError(
            f"Kafka at {where} did not answer within {waited_s:g} s while {action}",
            hint="is the broker up? start it with `make kafka-up` or check KAFKA_BOOTSTRAP_SERVERS, then retry",
        )
    return BrokerError(f"Kafka error while {action} on {where}: {type(exc).__name__}: {exc}")


def _as_user(settings: KafkaSettings) -> str:
    return f" as User:{settings.sasl_username}" if settings.security_protocol.startswith("SASL") else ""


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text and type(exc).__name__ not in text else text or type(exc).__name__


def guarded(settings: KafkaSettings, action: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` and re-raise Kafka errors as :class:`BrokerError` with context."""
    try:
        return fn()
    except kerr.KafkaError as exc:
        raise translate(exc, settings, action) from exc
    except AssertionError as exc:  # kafka-python asserts on some SASL misconfigurations
        raise AuthError(f"invalid security settings while {action}: {exc}") from exc


def _base(settings: KafkaSettings) -> dict[str, Any]:
    check_login(settings, timeout_s=min(5.0, bootstrap_timeout_s(settings)))
    kwargs = settings.client_kwargs()
    # fail fast when nothing answers instead of retrying forever
    kwargs.setdefault("bootstrap_timeout_ms", int(bootstrap_timeout_s(settings) * 1000))
    kwargs.setdefault("reconnect_backoff_max_ms", 2_000)
    return kwargs


def new_admin(settings: KafkaSettings) -> KafkaAdminClient:
    """A connected admin client (closed by the caller)."""
    kwargs = _base(settings)
    return guarded(settings, "connecting an admin client", lambda: KafkaAdminClient(**kwargs))


def new_consumer(settings: KafkaSettings, **config: Any) -> KafkaConsumer:
    """A consumer with no subscription (assign partitions yourself) unless ``topics`` is passed."""
    topics = config.pop("topics", ())
    kwargs = _base(settings)
    kwargs.update({"enable_auto_commit": False, "auto_offset_reset": "earliest"})
    kwargs.update(config)
    return guarded(settings, "connecting a consumer", lambda: KafkaConsumer(*topics, **kwargs))


def compression_type(settings: KafkaSettings) -> str | None:
    """kafka-python's ``compression_type`` for the settings' compression (None: uncompressed)."""
    return None if settings.compression in (None, "none") else settings.compression


def new_producer(settings: KafkaSettings, **config: Any) -> KafkaProducer:
    """A producer; idempotent by default (acks=all, enable_idempotence), every wait bounded.

    ``settings.compression`` (KAFKA_COMPRESSION), when set, wins over a ``compression_type`` in ``config``.
    """
    kwargs = _base(settings)
    kwargs.update(
        {
            "acks": "all",
            "enable_idempotence": True,
            "max_block_ms": settings.request_timeout_ms,
            "delivery_timeout_ms": 2 * settings.request_timeout_ms,
        }
    )
    kwargs.update(config)
    if settings.compression is not None:
        kwargs["compression_type"] = compression_type(settings)
    return guarded(settings, "connecting a producer", lambda: KafkaProducer(**kwargs))


def deliver(settings: KafkaSettings, producer: KafkaProducer, futures: Iterable[Any], action: str) -> list[Any]:
    """Flush ``producer`` and check every send: all acknowledged (their metadata) or one :class:`BrokerError`.

    Bounded by the producer's delivery timeout; a refused write (ACL) raises :class:`AuthError`.
    """
    timeout_s = producer.config["delivery_timeout_ms"] / 1000 + 5
    guarded(settings, action, lambda: producer.flush(timeout=timeout_s))
    return [guarded(settings, action, partial(f.get, timeout=timeout_s)) for f in futures]


def poll_until_end(
    settings: KafkaSettings,
    consumer: KafkaConsumer,
    end_offsets: Mapping[TopicPartition, int],
    *,
    action: str,
    stall_s: float | None = None,
    poll_timeout_ms: int = 500,
) -> Iterator[list[Any]]:
    """Poll the consumer's assigned partitions until each reaches its end offset (snapshotted by the caller).

    Yields batches of records below the end offsets. Raises :class:`BrokerError` naming the unfinished
    ``topic[partition]``s when no partition moves for ``stall_s`` (default :func:`stall_timeout_s`),
    which is how a broker that went away shows up here; a broker that restarts within it lets the loop finish.
    """
    stall_s = stall_timeout_s(settings) if stall_s is None else stall_s
    remaining = {tp for tp, end in end_offsets.items() if end > 0}
    positions = {tp: -1 for tp in remaining}
    last_progress = time.monotonic()
    while remaining:
        batches = guarded(settings, action, lambda: consumer.poll(timeout_ms=poll_timeout_ms))
        for tp, records in batches.items():
            end = end_offsets.get(tp)
            if end is None:
                continue
            below = [r for r in records if r.offset < end]
            if below:
                yield below
        for tp in list(remaining):
            position = guarded(settings, action, partial(consumer.position, tp))
            if position is not None and position != positions[tp]:
                positions[tp] = position
                last_progress = time.monotonic()
            if position is not None and position >= end_offsets[tp]:
                remaining.discard(tp)
        if remaining and time.monotonic() - last_progress > stall_s:
            stuck = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(remaining))
            raise BrokerError(
                f"reading stopped while {action}: no progress on {stuck} for {stall_s:g} s from "
                f"{settings.bootstrap_servers}",
                hint="is the broker up? check `recovery kafka status`, then retry",
            )


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
