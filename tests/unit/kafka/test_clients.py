"""kafka-python errors become one-line BrokerError/AuthError messages that say what happened and for how long."""

from __future__ import annotations

import kafka.errors as kerr
import pytest

from recovery.config import KafkaSettings
from recovery.errors import AuthError, BrokerError
from recovery.kafka.clients import translate

PLAIN = KafkaSettings(bootstrap_servers="127.0.0.1:9092")
SASL = KafkaSettings.from_env(
    env={
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "alice",
        "KAFKA_SASL_PASSWORD": "secret-pw",
    }
)


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (kerr.SaslAuthenticationFailedError("bad"), AuthError, "authentication to 127.0.0.1:9093 failed while x"),
        (kerr.TopicAuthorizationFailedError("t"), AuthError, "not authorized while x on 127.0.0.1:9093 as User:alice"),
        (
            kerr.KafkaError("Unexpected error in InitProducerIdResponse: [Error 31] ClusterAuthorizationFailedError"),
            AuthError,
            "ClusterAuthorizationFailedError",
        ),
        (kerr.KafkaConnectionError("111 ECONNREFUSED"), BrokerError, "no Kafka broker reachable at 127.0.0.1:9093"),
        (kerr.KafkaTimeoutError("Unable to bootstrap from ['x']"), BrokerError, "did not answer within 10 s while x"),
        (kerr.KafkaTimeoutError("Failed to get offsets"), BrokerError, "did not answer within 15 s while x"),
    ],
)
def test_translate(exc: Exception, kind: type[BrokerError], text: str) -> None:
    error = translate(exc, SASL, "x")
    assert type(error) is kind
    assert text in str(error)
    assert "secret-pw" not in str(error)


def test_bootstrap_timeout_follows_a_short_request_timeout() -> None:
    short = KafkaSettings(bootstrap_servers="127.0.0.1:9092", request_timeout_ms=3000)
    error = translate(kerr.KafkaTimeoutError("Unable to bootstrap from ['x']"), short, "x")
    assert "did not answer within 3 s" in str(error)


def test_authorization_without_sasl_names_no_user() -> None:
    assert "as User" not in str(translate(kerr.TopicAuthorizationFailedError("t"), PLAIN, "x"))
