"""A one-shot SASL login check, so wrong credentials fail in well under a second with a clear error.

kafka-python 3.0 retries a bootstrap whose SASL login was refused until its bootstrap timeout and then
reports a timeout: the broker answers the failed ``SaslAuthenticate`` and closes the connection at once,
and the client drops that answer when the close arrives in the same read. :func:`check_login` speaks the
two SASL requests itself (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, over TCP or TLS), reads the broker's answer
in full and turns a refusal into :class:`~recovery.errors.AuthError` with the broker's reason. A broker that
cannot be reached is left to the client, which reports it within its own bounded timeout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
import threading
import time

from recovery.config import KafkaSettings
from recovery.errors import AuthError

SASL_HANDSHAKE = 17  # api key, version 1
SASL_AUTHENTICATE = 36  # api key, version 1 (the last version without tagged fields)
SCRAM_HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}

_passed: set[KafkaSettings] = set()  # settings whose login succeeded in this process
_lock = threading.Lock()


class _Unreachable(Exception):
    """The broker could not be reached or hung up before the login: not a verdict on the credentials."""


def check_login(settings: KafkaSettings, timeout_s: float = 5.0) -> None:
    """Log in once to the first reachable bootstrap server; :class:`AuthError` if the broker refuses.

    No-op for protocols without SASL and for settings that already logged in from this process.
    """
    if not settings.security_protocol.startswith("SASL"):
        return
    with _lock:
        if settings in _passed:
            return
    deadline = time.monotonic() + timeout_s
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _login(settings, host, int(port), deadline)
        except _Unreachable:
            continue
        with _lock:
            _passed.add(settings)
        return


def _login(settings: KafkaSettings, host: str, port: int, deadline: float) -> None:
    where = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic()))
    except OSError as exc:
        raise _Unreachable(str(exc)) from exc
    try:
        if settings.security_protocol == "SASL_SSL":
            sock = _tls(settings, sock, host, where)
        conn = _Connection(sock, settings.client_id, deadline)
        mechanisms = conn.handshake(str(settings.sasl_mechanism), where)
        if settings.sasl_mechanism not in mechanisms:
            raise AuthError(
                f"the broker at {where} does not offer SASL mechanism {settings.sasl_mechanism}",
                hint=f"set KAFKA_SASL_MECHANISM to one of {', '.join(mechanisms) or '(none)'}",
            )
        if settings.sasl_mechanism == "PLAIN":
            conn.authenticate(_plain(settings), where)
        else:
            _scram(settings, conn, where)
    except (OSError, EOFError) as exc:
        raise _Unreachable(str(exc)) from exc
    finally:
        sock.close()


def _tls(settings: KafkaSettings, sock: socket.socket, host: str, where: str) -> socket.socket:
    context = ssl.create_default_context(cafile=settings.ssl_cafile)
    if settings.ssl_certfile:
        password = settings.ssl_password.reveal() if settings.ssl_password else None
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile, password)
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise AuthError(
            f"the TLS certificate of {where} was not accepted: {exc.verify_message}",
            hint="set KAFKA_SSL_CAFILE to the CA that signed the broker's certificate",
        ) from exc


def _plain(settings: KafkaSettings) -> bytes:
    assert settings.sasl_username and settings.sasl_password
    return b"\0" + settings.sasl_username.encode() + b"\0" + settings.sasl_password.reveal().encode()


def _scram(settings: KafkaSettings, conn: _Connection, where: str) -> None:
    """RFC 5802 client: client-first, server-first, client-final with proof, server signature check."""
    assert settings.sasl_username and settings.sasl_password and settings.sasl_mechanism
    digest = SCRAM_HASHES[settings.sasl_mechanism]
    name = settings.sasl_username.replace("=", "=3D").replace(",", "=2C")
    client_nonce = secrets.token_urlsafe(24)
    client_first_bare = f"n={name},r={client_nonce}"
    server_first = conn.authenticate(f"n,,{client_first_bare}".encode(), where).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    nonce, salt, iterations = fields["r"], base64.b64decode(fields["s"]), int(fields["i"])
    if not nonce.startswith(client_nonce):
        raise AuthError(f"the broker at {where} answered the SCRAM login with a foreign nonce")
    salted = hashlib.pbkdf2_hmac(digest().name, settings.sasl_password.reveal().encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", digest)
    without_proof = f"c=biws,r={nonce}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(digest(client_key).digest(), auth_message, digest)
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
    server_final = conn.authenticate(f"{without_proof},p={proof}".encode(), where).decode()
    server_key = hmac.digest(salted, b"Server Key", digest)
    expected = base64.b64encode(hmac.digest(server_key, auth_message, digest)).decode()
    if not hmac.compare_digest(server_final, f"v={expected}"):
        raise AuthError(f"the broker at {where} could not prove it knows the SCRAM credentials")


class _Connection:
    """Kafka request/response framing for the two SASL requests (request header v1, response header v0)."""

    def __init__(self, sock: socket.socket, client_id: str, deadline: float) -> None:
        self.sock = sock
        self.client_id = client_id.encode()
        self.deadline = deadline
        self.correlation_id = 0

    def handshake(self, mechanism: str, where: str) -> list[str]:
        body = self._call(SASL_HANDSHAKE, _string(mechanism.encode()))
        (error,) = struct.unpack_from(">h", body, 0)
        (count,) = struct.unpack_from(">i", body, 2)
        mechanisms, offset = [], 6
        for _ in range(max(count, 0)):
            value, offset = _read_string(body, offset)
            mechanisms.append(value)
        if error == 34:  # ILLEGAL_SASL_STATE: the port is not a SASL listener
            raise AuthError(
                f"{where} is not a SASL listener",
                hint="check KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL; the local broker's SASL "
                "address is in .kafka-local/bootstrap_sasl",
            )
        if error not in (0, 33):  # 33 UNSUPPORTED_SASL_MECHANISM is reported with the offered list
            raise AuthError(f"the SASL handshake with {where} failed with Kafka error code {error}")
        return mechanisms

    def authenticate(self, token: bytes, where: str) -> bytes:
        body = self._call(SASL_AUTHENTICATE, struct.pack(">i", len(token)) + token)
        (error,) = struct.unpack_from(">h", body, 0)
        message, offset = _read_string(body, 2)
        if error:
            raise AuthError(
                f"the broker at {where} refused the login: {message or f'Kafka error code {error}'}",
                hint="check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM",
            )
        (size,) = struct.unpack_from(">i", body, offset)
        return bytes(body[offset + 4 : offset + 4 + max(size, 0)])

    def _call(self, api_key: int, body: bytes) -> bytes:
        self.correlation_id += 1
        header = struct.pack(">hhih", api_key, 1, self.correlation_id, len(self.client_id)) + self.client_id
        request = header + body
        self._settimeout()
        self.sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", self._read(4))
        response = self._read(size)
        (correlation_id,) = struct.unpack_from(">i", response, 0)
        if correlation_id != self.correlation_id:
            raise EOFError(f"unexpected correlation id {correlation_id}")
        return response[4:]

    def _read(self, size: int) -> bytes:
        chunks, missing = [], size
        while missing:
            self._settimeout()
            chunk = self.sock.recv(missing)
            if not chunk:
                raise EOFError("the broker closed the connection")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def _settimeout(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer before the deadline")
        self.sock.settimeout(left)


def _string(value: bytes) -> bytes:
    return struct.pack(">h", len(value)) + value


def _read_string(buffer: bytes, offset: int) -> tuple[str, int]:
    (size,) = struct.unpack_from(">h", buffer, offset)
    if size < 0:
        return "", offset + 2
    return buffer[offset + 2 : offset + 2 + size].decode(errors="replace"), offset + 2 + size
