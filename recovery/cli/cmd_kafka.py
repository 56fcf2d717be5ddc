"""``recovery kafka ...``: the local broker and a cluster overview."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from recovery.config import KafkaSettings, Secret, local_broker_home
from recovery.errors import LocalBrokerError
from recovery.kafka import topics
from recovery.kafka.broker import SCRAM_MECHANISM as SCRAM
from recovery.kafka.broker import LocalBroker
from recovery.kafka.transactions import open_transactions
from recovery.spec import load_spec

UP_EPILOG = """\
examples:
  recovery kafka up
  recovery kafka down --wipe     stop the broker and DELETE its data (every topic)

The broker keeps its data in .kafka-local/data: `up` formats storage only when it is empty, and otherwise
restarts on the same data and cluster id (after a crash too: Kafka recovers its logs), on the same port
when it is free, else on a new one (written to .kafka-local/bootstrap, where the CLI finds it). Storage it
cannot use is an error, never a re-format.
  KAFKA_SASL_USERNAME=admin KAFKA_SASL_PASSWORD=... recovery kafka up --sasl

--sasl adds a SASL_PLAINTEXT listener (SCRAM-SHA-512) on another loopback port, written to
.kafka-local/bootstrap_sasl, and Kafka's standard authorizer (StandardAuthorizer). The user named by
KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD is created and is the SASL super user; other SASL users get only
what their ACLs allow. The PLAINTEXT listener (User:ANONYMOUS, a super user) stays as it is.
"""


STATUS_EPILOG = """\
Open transactions on the spec's corrections topic are listed (Kafka's Admin API: DescribeProducers,
ListTransactions, DescribeTransactions); one open past its timeout is HANGING: read_committed readers of
its partition wait at its first offset. A publish of the same fix set fences and aborts it; Kafka's own
tool does the same for any transaction:
  kafka/bin/kafka-transactions.sh --bootstrap-server HOST:PORT find-hanging --broker-id 1
  kafka/bin/kafka-transactions.sh --bootstrap-server HOST:PORT abort --topic T --partition P --start-offset O
"""


def register(sub: Any) -> None:
    kafka = sub.add_parser(
        "kafka",
        help="start/stop the local broker, show cluster status",
        description="The local single-node broker (KRaft, 127.0.0.1) and a cluster overview.",
        epilog="example: recovery kafka status",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = kafka.add_subparsers(dest="kafka_command", metavar="VERB", required=True)
    up = verbs.add_parser(
        "up",
        help="start the local broker (no-op if running)",
        epilog=UP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("--timeout-s", type=float, default=60.0, help="seconds to wait for readiness")
    up.add_argument(
        "--sasl",
        action="store_true",
        help="add a SCRAM-SHA-512 listener and the authorizer; super user from KAFKA_SASL_USERNAME/PASSWORD",
    )
    up.set_defaults(func=cmd_up)
    down = verbs.add_parser("down", help="stop the local broker (its data stays; --wipe deletes it)")
    down.add_argument("--wipe", action="store_true", help="also delete the broker's data: every topic, for good")
    down.set_defaults(func=cmd_down)
    status = verbs.add_parser(
        "status",
        help="broker reachable? topics, partitions, end offsets, open transactions on the corrections topic",
        epilog=STATUS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--all", action="store_true", help="include internal topics")
    status.add_argument("--spec", default="pipeline.toml", help="pipeline spec naming the corrections topic")
    status.set_defaults(func=cmd_status)


def cmd_up(args: argparse.Namespace) -> int:
    broker = LocalBroker.default()
    running = broker.bootstrap()
    if running:
        sasl = broker.sasl_bootstrap()
        if args.sasl and not sasl:
            raise LocalBrokerError(
                f"the local broker at {running} runs without SASL", hint="stop it with `recovery kafka down` first"
            )
        print(f"local broker already running at {running} (pid {broker.pid()})")
        if sasl:
            print(f"SASL_PLAINTEXT listener ({SCRAM}) at {sasl}")
        return 0
    users: dict[str, Secret] = {}
    if args.sasl:
        # the super user's credentials come from the environment, read (and kept secret) by KafkaSettings
        creds = KafkaSettings.from_env(
            {"bootstrap_servers": "127.0.0.1:9", "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": SCRAM}
        )
        assert creds.sasl_username and creds.sasl_password
        users = {creds.sasl_username: creds.sasl_password}
        broker = LocalBroker(local_broker_home(), sasl=True, sasl_admin=creds.sasl_username)
    started = time.monotonic()
    address = broker.start(timeout_s=args.timeout_s, sasl_users=users or None)
    print(f"local broker ready at {address} in {time.monotonic() - started:.1f} s (pid {broker.pid()})")
    cluster_id = broker.storage_cluster_id()
    if broker.formatted:
        print(f"formatted new storage in {broker.data_dir} (cluster id {cluster_id})")
    else:
        print(f"started on the existing data in {broker.data_dir} (cluster id {cluster_id})")
    if broker.moved_from is not None:
        print(f"port {broker.moved_from} was taken: now on {address} (written to {broker.bootstrap_file})")
    sasl = broker.sasl_bootstrap()
    if sasl:
        print(f"SASL_PLAINTEXT listener ({SCRAM}) at {sasl}; super user: {broker.sasl_admin}")
        print(
            f"  connect: KAFKA_BOOTSTRAP_SERVERS={sasl} KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT "
            f"KAFKA_SASL_MECHANISM={SCRAM}"
        )
        print(
            f"  add a user: kafka/bin/kafka-configs.sh --bootstrap-server {address} --alter --entity-type users "
            f"--entity-name bob --add-config '{SCRAM}=[password=...]'"
        )
        print(
            f"  grant: kafka/bin/kafka-acls.sh --bootstrap-server {address} --add --allow-principal User:bob "
            "--operation Read --topic ticks"
        )
    print(f"data and log: {broker.home}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    broker = LocalBroker.default()
    if not args.wipe:
        print("local broker stopped" if broker.stop() else "no local broker was running")
        print(f"its data stays in {broker.data_dir} (`recovery kafka down --wipe` deletes it)")
        return 0
    running = broker.pid() is not None
    if broker.wipe():
        print(f"{'local broker stopped; ' if running else ''}deleted its data in {broker.data_dir}: every topic")
    else:
        print(f"{'local broker stopped; ' if running else ''}no data to delete in {broker.data_dir}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = KafkaSettings.from_env()
    names = topics.list_topics(settings, include_internal=args.all)
    print(f"broker reachable: {settings.describe()}")
    if not names:
        print("no topics")
        return 0
    print(f"{'topic':40} {'partitions':>10} {'messages':>12}  end offsets")
    for name in names:
        info = topics.offsets(settings, name)
        ends = ",".join(str(info.end_offsets[p]) for p in sorted(info.end_offsets))
        print(f"{name:40} {info.partitions:>10} {info.messages:>12}  {ends}")
    corrections = _corrections_topic(args.spec)
    if corrections is None or corrections not in names:
        return 0
    found = open_transactions(settings, corrections)
    print(f"open transactions on {corrections}: {len(found) or 'none'}")
    for transaction in found:
        print(f"  {transaction.line()}")
    return 0


def _corrections_topic(spec_path: str) -> str | None:
    """The corrections topic of the spec, or None when there is no spec file."""
    if not Path(spec_path).is_file():
        return None
    return load_spec(spec_path).topics.corrections
