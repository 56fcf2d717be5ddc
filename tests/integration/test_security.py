"""Security on a broker with a SASL listener (SCRAM-SHA-512) and Kafka's standard authorizer.

The module starts its own broker (``LocalBroker(sasl=True)``) in a temporary directory, tied to the test
process. Users: ``admin`` (the SASL super user), ``writer`` (READ/WRITE/DESCRIBE on topics starting with
``sec-w-``), ``reader`` (READ/DESCRIBE on topics starting with ``sec-``, no WRITE anywhere). Passwords are
random per run. ACLs and topics are created through the PLAINTEXT listener, whose principal is a super user.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)
from kafka.structs import TopicPartition

from recovery.config import PROJECT_ROOT, KafkaSettings
from recovery.errors import AuthError
from recovery.kafka.broker import LocalBroker
from recovery.kafka.clients import admin, consumer, deliver, guarded, new_admin, new_consumer, new_producer, producer
from recovery.kafka.topics import ensure_topic, offsets

FAIL_FAST_S = 3.0  # wrong credentials must fail within this bound (observed: about 0.3 s)
USERS = ("admin", "writer", "reader")


@dataclass(frozen=True)
class SaslCluster:
    plain: str  # PLAINTEXT listener: User:ANONYMOUS, a super user (setup only)
    sasl: str  # SASL_PLAINTEXT listener: SCRAM-SHA-512, ACLs apply
    passwords: dict[str, str]

    def env(self, user: str, password: str | None = None) -> dict[str, str]:
        """The environment a user of the toolkit sets to reach the SASL listener."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.sasl,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": self.passwords[user] if password is None else password,
        }

    def settings(self, user: str, password: str | None = None) -> KafkaSettings:
        return KafkaSettings.from_env(env=self.env(user, password))

    @property
    def superuser(self) -> KafkaSettings:
        return KafkaSettings.from_env(env={"KAFKA_BOOTSTRAP_SERVERS": self.plain})


def _allow(user: str, operation: ACLOperation, kind: ResourceType, prefix: str) -> ACL:
    pattern = ResourcePattern(kind, prefix, ACLResourcePatternType.PREFIXED)
    return ACL(f"User:{user}", "*", operation, ACLPermissionType.ALLOW, pattern)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslCluster]:
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-sasl"), sasl=True)
    passwords = {user: secrets.token_urlsafe(16) for user in USERS}
    plain = broker.start(tie_to_parent=True, timeout_s=90, sasl_users=passwords)
    sasl = broker.sasl_bootstrap()
    assert sasl, "the SASL listener did not come up"
    try:
        found = SaslCluster(plain, sasl, passwords)
        read, write, describe = ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE
        acls = [_allow("writer", op, ResourceType.TOPIC, "sec-w-") for op in (read, write, describe)]
        acls += [_allow("reader", op, ResourceType.TOPIC, "sec-") for op in (read, describe)]
        with admin(found.superuser) as client:
            result = client.create_acls(acls)
        assert not result["failed"], result
        yield found
    finally:
        broker.stop()


@pytest.fixture
def topic(cluster: SaslCluster) -> Callable[[str], str]:
    """Factory of fresh topics (created by the super user) whose names start with ``prefix``."""

    def make(prefix: str) -> str:
        name = f"{prefix}{uuid.uuid4().hex[:10]}"
        ensure_topic(cluster.superuser, name, 2)
        return name

    return make


def produce(settings: KafkaSettings, topic: str, count: int) -> None:
    """Write ``count`` records through the toolkit's producer and wait for every acknowledgement."""
    with producer(settings) as p:
        futures = [
            guarded(settings, f"producing to {topic}", lambda i=i: p.send(topic, key=f"k{i}".encode(), value=b"v"))
            for i in range(count)
        ]
        deliver(settings, p, futures, f"producing to {topic}")


def read_all(settings: KafkaSettings, topic: str) -> list[bytes]:
    """Every record of ``topic`` below the end offsets snapshotted first."""
    with consumer(settings) as c:
        parts = [TopicPartition(topic, p) for p in range(2)]
        c.assign(parts)
        end = c.end_offsets(parts)
        c.seek_to_beginning(*parts)
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while any(c.position(tp) < end[tp] for tp in parts) and time.monotonic() < deadline:
            for batch in c.poll(timeout_ms=500).values():
                values.extend(r.value for r in batch)
        assert all(c.position(tp) >= end[tp] for tp in parts), "did not reach the end offsets"
        return values


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    return subprocess.run(
        [sys.executable, "-m", "recovery", *args],
        cwd=PROJECT_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_toolkit_connects_with_credentials_from_the_environment(
    cluster: SaslCluster, topic: Callable[[str], str]
) -> None:
    name = topic("sec-w-")
    settings = cluster.settings("writer")
    assert settings.security_protocol == "SASL_PLAINTEXT" and settings.sasl_username == "writer"
    produce(settings, name, 20)
    assert sorted(read_all(settings, name)) == [b"v"] * 20
    assert offsets(settings, name).messages == 20

    status = run_cli(cluster.env("writer"), "kafka", "status")
    assert status.returncode == 0, status.stderr
    assert f"{cluster.sasl} [SASL_PLAINTEXT, user writer (SCRAM-SHA-512)]" in status.stdout
    assert name in status.stdout and "20" in status.stdout
    assert cluster.passwords["writer"] not in status.stdout + status.stderr


@pytest.mark.parametrize("build", [new_admin, new_consumer, new_producer], ids=["admin", "consumer", "producer"])
@pytest.mark.parametrize("user", ["writer", "nobody"])
def test_wrong_credentials_fail_fast_with_an_authentication_error(
    cluster: SaslCluster, build: Callable[[KafkaSettings], object], user: str
) -> None:
    wrong = "not-" + secrets.token_urlsafe(8)
    settings = KafkaSettings.from_env(env={**cluster.env("writer", wrong), "KAFKA_SASL_USERNAME": user})
    started = time.monotonic()
    with pytest.raises(AuthError, match="refused the login: Authentication failed") as failure:
        build(settings)
    assert time.monotonic() - started < FAIL_FAST_S
    assert wrong not in str(failure.value) and "KAFKA_SASL_PASSWORD" in str(failure.value)


def test_wrong_password_in_the_cli_is_one_line_and_fast(cluster: SaslCluster) -> None:
    wrong = "not-" + secrets.token_urlsafe(8)
    started = time.monotonic()
    status = run_cli(cluster.env("writer", wrong), "kafka", "status")
    elapsed = time.monotonic() - started
    assert status.returncode == 2
    assert status.stderr.count("\n") == 1 and "Traceback" not in status.stderr
    assert "refused the login" in status.stderr and wrong not in status.stderr
    assert elapsed < FAIL_FAST_S + 5, f"took {elapsed:.1f} s (interpreter start included)"


def test_sasl_settings_against_the_plaintext_listener_say_so(cluster: SaslCluster) -> None:
    settings = KafkaSettings.from_env(env={**cluster.env("writer"), "KAFKA_BOOTSTRAP_SERVERS": cluster.plain})
    started = time.monotonic()
    with pytest.raises(AuthError, match="is not a SASL listener"):
        new_admin(settings)
    assert time.monotonic() - started < FAIL_FAST_S


@pytest.mark.parametrize(
    ("user", "prefix"),
    [("reader", "sec-r-"), ("writer", "sec-r-")],
    ids=["no-write-anywhere", "write-elsewhere-only"],
)
def test_produce_without_write_acl_is_refused_and_writes_nothing(
    cluster: SaslCluster, topic: Callable[[str], str], user: str, prefix: str
) -> None:
    name = topic(prefix)
    settings = cluster.settings(user)
    started = time.monotonic()
    with pytest.raises(
        AuthError, match=rf"not authorized while producing to {name} .* as User:{user}: .*Authorization"
    ):
        produce(settings, name, 5)
    assert time.monotonic() - started < FAIL_FAST_S
    assert offsets(cluster.superuser, name).messages == 0
    assert read_all(cluster.superuser, name) == []


def test_transactional_producer_without_transactional_id_acl_is_refused(cluster: SaslCluster) -> None:
    settings = cluster.settings("writer")
    refused = "not authorized while starting a transaction .* as User:writer: .*TransactionalIdAuthorizationFailed"
    with (
        producer(settings, transactional_id=f"sec-txn-{uuid.uuid4().hex[:8]}") as p,
        pytest.raises(AuthError, match=refused),
    ):
        guarded(settings, "starting a transaction", p.init_transactions)


def test_superuser_reaches_everything_over_sasl(cluster: SaslCluster, topic: Callable[[str], str]) -> None:
    name = topic("sec-any-")
    produce(cluster.settings("admin"), name, 3)
    assert len(read_all(cluster.settings("reader"), name)) == 3


def test_publish_without_write_acl_is_refused_and_writes_nothing(
    cluster: SaslCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A user allowed everything a publish needs except WRITE on the corrections topic: AuthError, and
    neither a correction nor a publish audit record (the attempt's publish-begin record remains)."""
    from kafka.admin import UserScramCredentialUpsertion

    from recovery.fixes.approval import approve
    from recovery.fixes.audit import ensure_audit_topic, read_audit
    from recovery.fixes.publish import CORRECTIONS_CONFIG, publish
    from recovery.spec import FieldsSpec, MetricSpec, PipelineSpec, TopicsSpec
    from tests.integration.test_publish import write_fix

    user, password = f"pub{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(16)
    base = f"{uuid.uuid4().hex[:8]}"
    topics = TopicsSpec(
        raw=f"sec-p-{base}.raw", output=f"sec-p-{base}.out", corrections=f"sec-c-{base}", audit=f"sec-p-{base}.audit"
    )
    spec = PipelineSpec(topics, FieldsSpec(), (MetricSpec("sma_5", "sma", n=5),))
    boss = cluster.superuser
    ensure_topic(boss, topics.corrections, 3, CORRECTIONS_CONFIG)
    ensure_audit_topic(boss, topics.audit)
    read, write, describe = ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE
    acls = [_allow(user, op, ResourceType.TOPIC, f"sec-p-{base}") for op in (read, write, describe)]
    configs = ACLOperation.DESCRIBE_CONFIGS
    acls += [_allow(user, op, ResourceType.TOPIC, topics.corrections) for op in (read, describe, configs)]  # no WRITE
    acls += [_allow(user, op, ResourceType.TRANSACTIONAL_ID, "recovery-publish-") for op in (write, describe)]
    # librdkafka's bounded reader (the default client) looks up its consumer group's coordinator
    acls += [_allow(user, op, ResourceType.GROUP, "recovery-") for op in (read, describe)]
    with admin(boss) as client:
        upsert = UserScramCredentialUpsertion(user, "SCRAM-SHA-512", password)
        assert not any(client.alter_user_scram_credentials([upsert]).values())
        assert not client.create_acls(acls)["failed"]
    settings = KafkaSettings.from_env(
        env={**cluster.env("writer"), "KAFKA_SASL_USERNAME": user, "KAFKA_SASL_PASSWORD": password}
    )
    directory = tmp_path_factory.mktemp("pub") / "fx"
    fixset = write_fix(spec, directory, n=30)
    approve(directory, "carol", boss)
    deadline = time.monotonic() + 20
    while True:  # new SCRAM credentials reach the broker's metadata shortly after they are written
        try:
            new_admin(settings).close()
            break
        except AuthError:
            assert time.monotonic() < deadline, "the new user could not log in"
    with pytest.raises(
        AuthError,
        match=rf"not authorized while publishing .* as User:{user}: .*TopicAuthorization.*{topics.corrections}",
    ) as refused:
        publish(directory, settings)
    assert password not in str(refused.value)
    assert offsets(boss, topics.corrections).messages == 0
    assert read_audit(boss, topics.audit, digest=fixset.digest, event="publish") == []
