"""The local broker's storage and ports: is there data to start on, which ports to listen on (no Kafka client)."""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from pathlib import Path

from recovery.errors import LocalBrokerError

CLUSTER_ID = re.compile(r"[A-Za-z0-9_-]{22}")
_LISTENER = re.compile(r"(PLAINTEXT|SASL_PLAINTEXT|CONTROLLER)://127\.0\.0\.1:(\d+)")
_PORT_NAMES = {"PLAINTEXT": "port", "CONTROLLER": "controller_port", "SASL_PLAINTEXT": "sasl_port"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when nothing listens on (or holds) 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def unusable(data_dir: Path, reason: str) -> LocalBrokerError:
    """The one error for storage the broker cannot start on."""
    return LocalBrokerError(
        f"the local broker's storage {data_dir} cannot be used: {reason}",
        hint="nothing was changed; restore it, or delete it with `recovery kafka down --wipe` "
        "(deletes every topic, correction and audit record)",
    )


def storage_cluster_id(data_dir: Path, cluster_id_file: Path) -> str | None:
    """The cluster id in ``data_dir/meta.properties``; None when ``data_dir`` is empty or missing.

    No or a damaged meta.properties, or a cluster id other than the one recorded in ``cluster_id_file``
    when the storage was formatted, raise :class:`LocalBrokerError`; nothing is changed.
    """
    if not data_dir.is_dir() or not any(data_dir.iterdir()):
        return None
    meta = data_dir / "meta.properties"
    try:
        text = meta.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise unusable(data_dir, f"{meta.name} cannot be read ({type(exc).__name__})") from None
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    cluster_id, node_id = values.get("cluster.id", "").strip(), values.get("node.id", "").strip()
    if not CLUSTER_ID.fullmatch(cluster_id) or node_id != "1":
        raise unusable(data_dir, f"{meta.name} is damaged (cluster.id {cluster_id!r}, node.id {node_id!r})")
    if cluster_id_file.is_file():
        recorded = cluster_id_file.read_text().strip()
        if recorded != cluster_id:
            raise unusable(data_dir, f"its cluster id {cluster_id} is not the one formatted here ({recorded})")
    return cluster_id


def previous_ports(properties: Path) -> dict[str, int]:
    """The ports in the ``listeners`` line of an earlier run's server.properties (empty when none)."""
    try:
        text = properties.read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        if line.startswith("listeners="):
            return {_PORT_NAMES[kind]: int(port) for kind, port in _LISTENER.findall(line)}
    return {}


def choose_ports(previous: dict[str, int], names: Sequence[str]) -> list[int]:
    """One distinct port per name: the previous one when it is free, else a new free one."""
    chosen: list[int] = []
    for name in names:
        old = previous.get(name)
        if old is not None and old not in chosen and port_is_free(old):
            chosen.append(old)
            continue
        port = free_port()
        while port in chosen or port in previous.values():
            port = free_port()
        chosen.append(port)
    return chosen
