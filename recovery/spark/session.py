"""The Spark session a recovery runs on: the master checked first, errors that say what to do.

``local[N]`` runs Spark in this process's JVM with N task slots (no cluster needed); ``spark://host:port``
is a standalone cluster, checked for reachability before Spark is asked (it would retry for a minute);
``yarn`` needs ``HADOOP_CONF_DIR`` or ``YARN_CONF_DIR``; ``k8s://...`` is passed through as given. One
session per process: a second recovery reuses it when the master is the same.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass
from typing import Any

from recovery.errors import ConfigError
from recovery.spark.chunks import DEFAULT_CHUNK_RECORDS, check_chunk_records

DEFAULT_MASTER = "local[2]"
DEFAULT_DRIVER_MEMORY = "2g"  # local[N]: the 10M benchmark scenario runs out of 1g (docs/spark.md)
PYSPARK_VERSION = "4.2.0"  # the version whose Kafka connector (spark-sql-kafka-0-10_2.13) Maven serves
_LOCAL = re.compile(r"^local(\[(\*|\d+)(,\d+)?\])?$")
_STANDALONE = re.compile(r"^spark://([^/]+)$")
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SparkOptions:
    """Where and how a recovery runs on Spark; checked when built."""

    master: str = DEFAULT_MASTER
    chunk_records: int = DEFAULT_CHUNK_RECORDS  # offsets a task reads; partitions larger than this are split
    driver_memory: str = DEFAULT_DRIVER_MEMORY  # local mode: the one JVM's heap
    parts: str | None = None  # where tasks leave their parts: a shared directory or an object-storage URL

    def __post_init__(self) -> None:
        check_master(self.master)
        check_chunk_records(self.chunk_records)
        if not re.fullmatch(r"\d+[kmgKMG]", self.driver_memory):
            raise ConfigError(f"driver_memory must look like 512m or 2g, got {self.driver_memory!r}")


def check_master(master: str) -> str:
    """``master`` if Spark would accept its form; :class:`ConfigError` otherwise."""
    if _LOCAL.match(master) or _STANDALONE.match(master) or master == "yarn" or master.startswith("k8s://"):
        return master
    raise ConfigError(
        f"unknown Spark master {master!r}",
        hint="use local[N] (this machine, N task slots), spark://HOST:PORT, yarn or k8s://https://HOST:PORT",
    )


def check_reachable(master: str) -> None:
    """:class:`ConfigError` when a standalone master accepts no connection, or yarn has no configuration."""
    found = _STANDALONE.match(master)
    if found:
        errors = []
        for address in found.group(1).split(","):
            host, _, port = address.rpartition(":")
            try:
                with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
                    return
            except (OSError, ValueError) as exc:
                errors.append(f"{address}: {exc}")
        raise ConfigError(
            f"cannot reach the Spark master {master} ({'; '.join(errors)})",
            hint="start the master (sbin/start-master.sh) or check --spark-master; local[2] runs on this machine",
        )
    if master == "yarn" and not (os.environ.get("HADOOP_CONF_DIR") or os.environ.get("YARN_CONF_DIR")):
        raise ConfigError(
            "--spark-master yarn needs the cluster's configuration",
            hint="set HADOOP_CONF_DIR (or YARN_CONF_DIR) to the directory of yarn-site.xml, or run with spark-submit",
        )


def require_pyspark() -> Any:
    """The ``pyspark`` module; :class:`ConfigError` when it is not installed."""
    try:
        import pyspark
    except ImportError:
        raise ConfigError(
            "--engine spark needs pyspark, which is not installed",
            hint=f"pip install 'recovery[spark]' (pyspark {PYSPARK_VERSION}; make setup installs it)",
        ) from None
    return pyspark


def open_session(options: SparkOptions) -> Any:
    """The process's SparkSession on ``options.master`` (created on first use, then reused)."""
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        running = active.sparkContext.master
        if running != options.master:
            raise ConfigError(
                f"a Spark session on {running} already runs in this process; asked for {options.master}",
                hint="use the same --spark-master, or stop the session first (spark.stop())",
            )
        return active
    check_reachable(options.master)
    if options.master.startswith("local"):
        # the tasks' Python workers must be this interpreter (its venv has the toolkit)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(options.master)
        .appName("recovery")
        .config("spark.driver.memory", options.driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.adaptive.enabled", "false")  # one shuffle partition per key group, as planned
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "64")  # rows carry whole frames
        # a cached batch of the persisted chunk rows holds this many payloads (the default, 10,000, would put
        # a whole chunk's events in one buffer of the JVM's heap)
        .config("spark.sql.inMemoryColumnarStorage.batchSize", "16")
        .config("spark.driver.maxResultSize", "0")
    )
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # pyspark raises its own runtime errors: Java missing, a refused master
        raise ConfigError(
            f"cannot start Spark on {options.master}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint="Spark needs Java 17+ on PATH or JAVA_HOME; check --spark-master",
        ) from exc
    session.sparkContext.setLogLevel("ERROR")
    return session
