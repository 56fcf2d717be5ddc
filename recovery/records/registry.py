"""A small client of the Confluent Schema Registry REST API: fetch a schema by id, register one, check the URL.

Works against any server speaking that API (Confluent Schema Registry, Apicurio Registry under
``/apis/ccompat/v7``, Redpanda). Schemas fetched by id are cached for the client's life: an id names one
schema forever. Basic-auth credentials come from the environment only
(:func:`recovery.config.registry_credentials`); a URL with a user or password in it is refused, so secrets
never sit in a spec file or a log line.

A registry that is down, refuses the credentials or does not speak the API is one :class:`RegistryError`
naming the URL; an id the registry does not know is not an error here (``None``): the codec turns it into
a quarantine reason for the records that carry it.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recovery.config import RegistryCredentials, registry_credentials
from recovery.errors import ConfigError, RegistryError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
SCHEMA_NOT_FOUND = 40403  # the API's error_code for an unknown schema id
UNREACHABLE_HINT = "check that the registry runs and the URL is right (for Apicurio Registry add /apis/ccompat/v7)"


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as the registry serves it: its text and its type (AVRO when the registry omits it)."""

    schema_id: int
    text: str
    schema_type: str = "AVRO"


def _check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"Schema Registry URL {url!r} is not http(s)://host[:port][/path]")
    if parts.username or parts.password:
        raise ConfigError(
            "a Schema Registry URL must not carry credentials",
            hint="set SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD instead",
        )
    return url.rstrip("/")


class RegistryClient:
    """Talks to one Schema Registry; build with :meth:`from_env` to pick up credentials."""

    def __init__(self, url: str, *, credentials: RegistryCredentials | None = None, timeout_s: float = 10.0) -> None:
        self.url = _check_url(url)
        self.timeout_s = timeout_s
        self._auth: str | None = None
        if credentials is not None:
            token = f"{credentials.username}:{credentials.password.reveal()}".encode()
            self._auth = "Basic " + base64.b64encode(token).decode("ascii")
        self._schemas: dict[int, RegisteredSchema | None] = {}

    @classmethod
    def from_env(cls, url: str, *, env: Mapping[str, str] | None = None, timeout_s: float = 10.0) -> RegistryClient:
        """A client for ``url`` with the credentials of the environment, if any."""
        return cls(url, credentials=registry_credentials(env), timeout_s=timeout_s)

    def __repr__(self) -> str:
        return f"RegistryClient({self.url!r}, auth={'yes' if self._auth else 'no'})"

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body) for a request; raises RegistryError when no usable answer came."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", f"{CONTENT_TYPE}, application/json")
        if data is not None:
            request.add_header("Content-Type", CONTENT_TYPE)
        if self._auth:
            request.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(
                f"Schema Registry {self.url} is unreachable: {reason}", url=self.url, hint=UNREACHABLE_HINT
            ) from None
        if status in (401, 403):
            raise RegistryError(
                f"Schema Registry {self.url} refused the request ({status})",
                url=self.url,
                hint="set SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD to a user that may read schemas",
                retriable=False,
            )
        try:
            payload = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            payload = None
        if status >= 500 or (status >= 400 and not isinstance(payload, dict)):
            raise RegistryError(
                f"Schema Registry {self.url} answered {method} {path} with HTTP {status}",
                url=self.url,
                hint=UNREACHABLE_HINT,
                retriable=status >= 500,
            )
        return status, payload

    def check(self) -> None:
        """Raise :class:`RegistryError` unless the registry answers its subject list (call before a run)."""
        status, payload = self._request("GET", "/subjects")
        if status != 200 or not isinstance(payload, list):
            raise RegistryError(
                f"{self.url} does not answer like a Schema Registry (GET /subjects gave HTTP {status})",
                url=self.url,
                hint=UNREACHABLE_HINT,
                retriable=False,
            )

    def schema(self, schema_id: int) -> RegisteredSchema | None:
        """The schema registered under ``schema_id``, or None if the registry has no such id (cached)."""
        if schema_id in self._schemas:
            return self._schemas[schema_id]
        status, payload = self._request("GET", f"/schemas/ids/{schema_id}")
        found: RegisteredSchema | None
        if status == 404 and payload.get("error_code") == SCHEMA_NOT_FOUND:
            found = None
        elif status == 200 and isinstance(payload, dict) and isinstance(payload.get("schema"), str):
            found = RegisteredSchema(schema_id, payload["schema"], str(payload.get("schemaType") or "AVRO").upper())
        else:
            raise RegistryError(
                f"Schema Registry {self.url} gave an unexpected answer for schema id {schema_id} (HTTP {status})",
                url=self.url,
                hint=UNREACHABLE_HINT,
                retriable=False,
            )
        self._schemas[schema_id] = found
        return found

    def register(self, subject: str, schema: Mapping[str, Any] | str, schema_type: str = "AVRO") -> int:
        """Register ``schema`` under ``subject`` (a new version, or the existing one); returns its id."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        body: dict[str, Any] = {"schema": text}
        if schema_type != "AVRO":
            body["schemaType"] = schema_type
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions"
        status, payload = self._request("POST", path, body)
        if status != 200 or not isinstance(payload, dict) or not isinstance(payload.get("id"), int):
            detail = payload.get("message") if isinstance(payload, dict) else None
            raise RegistryError(
                f"Schema Registry {self.url} refused to register subject {subject!r} (HTTP {status}: {detail})",
                url=self.url,
                hint="check the schema parses and is compatible with the subject's earlier versions",
                retriable=False,
            )
        return int(payload["id"])
