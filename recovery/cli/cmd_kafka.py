"""``recovery kafka ...``: the local broker and a cluster overview."""

from __future__ import annotations

import argparse
import time
from typing import Any

from recovery.config import KafkaSettings, Secret, local_broker_home
from recovery.errors import LocalBrokerError
from recovery.kafka import topics
from recovery.kafka.broker import SCRAM_MECHANISM as SCRAM
from recovery.kafka.broker import LocalBroker

UP_EPILOG = """\
examples:
  recovery kafka up
  KAFKA_SASL_USERNAME=admin KAFKA_SASL_PASSWORD=... recovery kafka up --sasl

--sasl adds a SASL_PLAINTEXT listener (SCRAM-SHA-512) on another loopback port, written to
.kafka-local/bootstrap_sasl, and Kafka's standard authorizer (StandardAuthorizer). The user named by
KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD is created and is the SASL super user; other SASL users get only
what their ACLs allow. The PLAINTEXT listener (User:ANONYMOUS, a super user) stays as it is.
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
    down = verbs.add_parser("down", help="stop the local broker")
    down.set_defaults(func=cmd_down)
    status = verbs.add_parser("status", help="broker reachable? topics, partitions, end offsets")
    status.add_argument("--all", action="store_true", help="include internal topics")
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
    print("local broker stopped" if broker.stop() else "no local broker was running")
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
    return 0
