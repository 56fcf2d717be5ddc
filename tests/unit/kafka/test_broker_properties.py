"""The local broker's server.properties, plain and with the SASL listener and the authorizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from recovery.errors import LocalBrokerError
from recovery.kafka.broker import SERVER_PROPERTIES, LocalBroker, server_properties


def parse(text: str) -> dict[str, str]:
    keys = [line.split("=", 1)[0] for line in text.splitlines() if line]
    assert len(keys) == len(set(keys)), "a key appears twice"
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_plain_properties_are_unchanged() -> None:
    text = server_properties(port=1, controller_port=2, data_dir=Path("/d"))
    assert text == SERVER_PROPERTIES.format(port=1, controller_port=2, data_dir=Path("/d"))
    assert "authorizer.class.name" not in parse(text)


def test_sasl_properties_add_a_scram_listener_and_the_standard_authorizer() -> None:
    props = parse(server_properties(port=1, controller_port=2, data_dir=Path("/d"), sasl_port=3, sasl_admin="root"))
    assert props["listeners"] == ("PLAINTEXT://127.0.0.1:1,SASL_PLAINTEXT://127.0.0.1:3,CONTROLLER://127.0.0.1:2")
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1,SASL_PLAINTEXT://127.0.0.1:3"
    assert props["listener.security.protocol.map"].split(",") == [
        "PLAINTEXT:PLAINTEXT",
        "SASL_PLAINTEXT:SASL_PLAINTEXT",
        "CONTROLLER:PLAINTEXT",
    ]
    assert props["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:ANONYMOUS;User:root"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"


def test_sasl_users_need_a_sasl_broker(tmp_path: Path) -> None:
    with pytest.raises(LocalBrokerError, match="sasl=True"):
        LocalBroker(tmp_path).start(sasl_users={"alice": "pw"})


def test_odd_user_names_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(LocalBrokerError, match="not allowed"):
        LocalBroker(tmp_path, sasl=True).start(sasl_users={"a;User:evil": "pw"})
    assert not (tmp_path / "server.properties").exists()
