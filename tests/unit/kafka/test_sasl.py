"""The SASL login check: SCRAM maths against the RFC 7677 example, and when it stays out of the way."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recovery.config import KafkaSettings
from recovery.errors import AuthError
from recovery.kafka import sasl

# RFC 7677, section 3: SCRAM-SHA-256, user "user", password "pencil"
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = (
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


class FakeBroker:
    """Answers the two SCRAM rounds with fixed server messages and records what the client sent."""

    def __init__(self, server_final: str) -> None:
        self.answers = [SERVER_FIRST.encode(), server_final.encode()]
        self.sent: list[str] = []

    def authenticate(self, token: bytes, where: str) -> bytes:
        self.sent.append(token.decode())
        return self.answers[len(self.sent) - 1]


def settings(**env: str) -> KafkaSettings:
    base = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": "user",
        "KAFKA_SASL_PASSWORD": "pencil",
    }
    return KafkaSettings.from_env(env={**base, **env})


def test_scram_client_messages_match_rfc_7677(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sasl.secrets, "token_urlsafe", lambda n: CLIENT_NONCE)
    broker = FakeBroker(SERVER_FINAL)
    sasl._scram(settings(), broker, "fake:1")  # type: ignore[arg-type]
    assert broker.sent == [f"n,,n=user,r={CLIENT_NONCE}", CLIENT_FINAL]


def test_scram_refuses_a_server_that_does_not_know_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sasl.secrets, "token_urlsafe", lambda n: CLIENT_NONCE)
    with pytest.raises(AuthError, match="could not prove it knows the SCRAM credentials"):
        sasl._scram(settings(), FakeBroker("v=AAAA"), "fake:1")  # type: ignore[arg-type]


def test_plain_token_is_authzid_user_password() -> None:
    assert sasl._plain(settings(KAFKA_SASL_MECHANISM="PLAIN")) == b"\0user\0pencil"


def test_check_login_leaves_unreachable_brokers_and_plaintext_to_the_client() -> None:
    started = time.monotonic()
    sasl.check_login(settings())  # nothing listens on port 1: no verdict on the credentials
    sasl.check_login(KafkaSettings.from_env(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}))
    assert time.monotonic() - started < 1


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A loopback TLS server with a self-signed certificate for 127.0.0.1 that hangs up after the handshake."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, cert
    listener.close()


def test_sasl_ssl_login_checks_the_broker_certificate_with_the_given_ca(tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    untrusted = settings(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}", KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    with pytest.raises(AuthError, match=f"the TLS certificate of 127.0.0.1:{port} was not accepted"):
        sasl.check_login(untrusted)
    trusted = settings(
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}", KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SSL_CAFILE=str(cert)
    )
    sasl.check_login(trusted)  # handshake accepted; the server then hangs up: no verdict, no error
