"""The local broker keeps its data: stop or SIGKILL, start again, same cluster, topics, offsets and committed
records; on its old port when free, else a new one; unusable storage is one error and stays untouched."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from recovery.config import KafkaSettings
from recovery.errors import LocalBrokerError
from recovery.kafka.broker import LocalBroker
from recovery.kafka.storage import port_is_free
from recovery.kafka.topics import ensure_topic, list_topics, offsets
from tests.integration.engine_helpers import read_all

TOPIC, TX_TOPIC = "keep-plain", "keep-tx"


def settings_for(address: str) -> KafkaSettings:
    return KafkaSettings.from_env(env={"KAFKA_BOOTSTRAP_SERVERS": address})


def write_records(settings: KafkaSettings) -> None:
    """100 plain records on 2 partitions, 50 committed and 20 aborted transactional records."""
    ensure_topic(settings, TOPIC, 2)
    ensure_topic(settings, TX_TOPIC, 1, {"cleanup.policy": "compact"})
    plain = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for i in range(100):
        plain.send(TOPIC, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2)
    plain.flush()
    plain.close()
    tx = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, transactional_id="keep-tx", acks="all")
    tx.init_transactions()
    tx.begin_transaction()
    for i in range(50):
        tx.send(TX_TOPIC, key=f"c{i}".encode(), value=b"committed")
    tx.commit_transaction()
    tx.begin_transaction()
    for i in range(20):
        tx.send(TX_TOPIC, key=f"a{i}".encode(), value=b"aborted")
    tx.flush()
    tx.abort_transaction()
    tx.close()


def snapshot(settings: KafkaSettings) -> tuple[list[str], dict[int, int], dict[int, int], list[bytes]]:
    topics = sorted(t for t in list_topics(settings) if t in (TOPIC, TX_TOPIC))
    committed = sorted(r.key for r in read_all(settings, TX_TOPIC, "read_committed"))
    return topics, offsets(settings, TOPIC).end_offsets, offsets(settings, TX_TOPIC).end_offsets, committed


def test_data_survives_stop_and_sigkill_and_a_taken_port(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "home")
    try:
        address = broker.start(tie_to_parent=True, timeout_s=90)
        assert broker.formatted
        cluster_id = broker.storage_cluster_id()
        write_records(settings_for(address))
        before = snapshot(settings_for(address))
        # the expected state comes from what was written, not from a read
        assert before == (
            [TOPIC, TX_TOPIC],
            {0: 50, 1: 50},
            {0: 50 + 1 + 20 + 1},  # 50 committed, a commit marker, 20 aborted, an abort marker
            sorted(f"c{i}".encode() for i in range(50)),
        )

        broker.stop()  # a clean stop, then start again
        again = broker.start(tie_to_parent=True, timeout_s=90)
        assert (again, broker.formatted, broker.storage_cluster_id()) == (address, False, cluster_id)
        assert snapshot(settings_for(again)) == before

        broker.kill()  # an unclean stop; the old port is then taken by someone else
        port = int(address.rsplit(":", 1)[1])
        deadline = time.monotonic() + 15
        while not port_is_free(port) and time.monotonic() < deadline:  # the kernel closes a killed listener
            time.sleep(0.1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the killed broker's TIME_WAITs
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            moved = broker.start(tie_to_parent=True, timeout_s=90)
        assert moved != address and broker.moved_from == port
        assert broker.bootstrap_file.read_text().strip() == moved  # where the CLI finds it
        assert (broker.formatted, broker.storage_cluster_id()) == (False, cluster_id)
        assert snapshot(settings_for(moved)) == before
    finally:
        broker.stop()


def tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def fake_storage(home: Path, meta: str, recorded: str | None) -> Path:
    data = home / "data"
    (data / "keep-plain-0").mkdir(parents=True)
    (data / "keep-plain-0" / "00000000000000000000.log").write_bytes(b"\x00" * 64)
    (data / "meta.properties").write_text(meta)
    if recorded is not None:
        (home / "cluster.id").write_text(recorded + "\n")
    return data


GOOD_ID, OTHER_ID = "AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBB"


@pytest.mark.parametrize(
    ("meta", "recorded", "message"),
    [
        ("version=1\nnode.id=1\n", GOOD_ID, "meta.properties is damaged"),
        ("\x00\x17garbage", None, "meta.properties is damaged"),
        (f"version=1\ncluster.id={OTHER_ID}\nnode.id=1\n", GOOD_ID, f"its cluster id {OTHER_ID} is not the one"),
    ],
    ids=["no-cluster-id", "garbage", "cluster-id-mismatch"],
)
def test_unusable_storage_is_one_error_and_stays_untouched(
    tmp_path: Path, meta: str, recorded: str | None, message: str
) -> None:
    home = tmp_path / "home"
    data = fake_storage(home, meta, recorded)
    before = tree(home)
    with pytest.raises(LocalBrokerError, match=message) as error:
        LocalBroker(home).start(timeout_s=30)
    assert "\n" not in str(error.value) and "--wipe" in str(error.value)
    assert tree(home) == before and data.is_dir()

    # the CLI says the same in one line, exit 2, and touches nothing
    env = {**os.environ, "RECOVERY_KAFKA_HOME": str(home)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    cli = subprocess.run([sys.executable, "-m", "recovery", "kafka", "up"], env=env, capture_output=True, text=True)
    assert cli.returncode == 2 and message.split(" is")[0] in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert tree(home) == before


def test_down_wipe_deletes_the_data_and_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = fake_storage(home, f"version=1\ncluster.id={GOOD_ID}\nnode.id=1\n", GOOD_ID)
    env = {**os.environ, "RECOVERY_KAFKA_HOME": str(home)}
    down = subprocess.run([sys.executable, "-m", "recovery", "kafka", "down"], env=env, capture_output=True, text=True)
    assert down.returncode == 0 and "data stays" in down.stdout and data.is_dir()
    wipe = [sys.executable, "-m", "recovery", "kafka", "down", "--wipe"]
    first = subprocess.run(wipe, env=env, capture_output=True, text=True)
    assert first.returncode == 0 and f"deleted its data in {data}" in first.stdout
    assert not data.exists() and not (home / "cluster.id").exists()
    second = subprocess.run(wipe, env=env, capture_output=True, text=True)
    assert second.returncode == 0 and "no data to delete" in second.stdout
