from __future__ import annotations

import pytest

from recovery.config import registry_credentials
from recovery.errors import ConfigError, RegistryError
from recovery.kafka.storage import free_port
from recovery.records.registry import RegistryClient


def test_credentials_come_from_the_environment_and_never_print() -> None:
    assert registry_credentials({}) is None
    creds = registry_credentials({"SCHEMA_REGISTRY_USERNAME": "svc", "SCHEMA_REGISTRY_PASSWORD": "s3cret"})
    assert creds is not None and creds.username == "svc" and creds.password.reveal() == "s3cret"
    assert "s3cret" not in repr(creds)
    client = RegistryClient.from_env(
        "http://127.0.0.1:1", env={"SCHEMA_REGISTRY_USERNAME": "svc", "SCHEMA_REGISTRY_PASSWORD": "s3cret"}
    )
    assert "s3cret" not in repr(client) and "auth=yes" in repr(client)


@pytest.mark.parametrize(
    "env", [{"SCHEMA_REGISTRY_USERNAME": "svc"}, {"SCHEMA_REGISTRY_PASSWORD": "x"}], ids=["no-password", "no-user"]
)
def test_half_given_credentials_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="credentials are incomplete"):
        registry_credentials(env)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://user:pw@127.0.0.1:8081", "must not carry credentials"),
        ("ftp://127.0.0.1/x", "is not http"),
        ("127.0.0.1:8081", "is not http"),
    ],
)
def test_bad_urls_are_refused_when_the_client_is_built(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RegistryClient(url)


def test_nothing_listening_is_one_registry_error_with_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    with pytest.raises(RegistryError, match="is unreachable") as info:
        RegistryClient(url, timeout_s=2).schema(1)
    assert info.value.url == url and url in str(info.value)
