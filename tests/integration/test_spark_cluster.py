"""`recovery recover --engine spark` on a standalone Spark cluster, its parts in an S3-compatible object store.

A master and a worker are started here (pyspark's own `spark-class`), so the tasks run in an executor JVM of
their own whose environment has neither the Kafka nor the S3 settings: both travel with the tasks. The
object store is moto's S3 server on loopback, the bucket versioned so that the parts the tasks wrote can
be listed after the run deleted them. The reference is the per-partition engine on the same incident.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.config import KafkaSettings
from recovery.sim.simulate import simulate
from recovery.sim.ticks import SimulationParams
from tests.integration.test_recover_cli import write_spec
from tests.integration.test_recover_spark import _spec

pytestmark = pytest.mark.spark

BUCKET = "recovery-scratch"
CHUNK = 250
SORT = ["metric", "key", "window"]
RECOVERY = str(Path(sys.executable).parent / "recovery")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_without_settings() -> dict[str, str]:
    """This environment without Kafka or AWS settings: the executors must get them from the tasks."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "AWS_"))}


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """moto's S3 server on loopback with a versioned bucket; the AWS settings that reach it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = {
        "AWS_ACCESS_KEY_ID": "recovery-test",
        "AWS_SECRET_ACCESS_KEY": "recovery-test",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    client = _client(settings)
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    yield settings
    server.stop()


def _client(settings: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=settings["AWS_ENDPOINT_URL"],
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        region_name=settings["AWS_REGION"],
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A standalone master and one worker (2 cores, 1 GB); the master's URL and the worker's work directory."""
    import pyspark

    home = Path(pyspark.__file__).parent
    spark_class = str(home / "bin" / "spark-class")
    base = tmp_path_factory.mktemp("spark-cluster")
    env = {
        **_env_without_settings(),
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(base / "logs"),
        "SPARK_DAEMON_MEMORY": "256m",
    }
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    work = base / "work"
    logs = [open(base / name, "wb") for name in ("master.log", "worker.log")]  # noqa: SIM115
    master = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port)]
        + ["--webui-port", str(ui)],
        env=env,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "2"]
        + ["--memory", "1g", "--work-dir", str(work), "--webui-port", str(_free_port()), url],
        env=env,
        stdout=logs[1],
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not _alive_workers(ui):
            assert time.monotonic() < deadline, (base / "worker.log").read_text(errors="replace")[-2000:]
            assert master.poll() is None and worker.poll() is None, "the Spark master or worker exited"
            time.sleep(1)
        yield url, work
    finally:
        for process in (worker, master):
            process.terminate()
        for process in (worker, master):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as answer:
            return int(json.load(answer).get("aliveworkers", 0))
    except OSError:
        return 0


def test_a_standalone_cluster_with_parts_in_object_storage_gives_the_fix_set_of_the_per_partition_engine(
    cluster: tuple[str, Path],
    s3: dict[str, str],
    kafka_settings: KafkaSettings,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    url, worker_dir = cluster
    spec = _spec(unique_name("spc"))
    incident = simulate(kafka_settings, spec, SimulationParams(symbols=4, events=3_000, seed=31))
    lo, hi = incident["recovery_range"]["from_ms"], incident["recovery_range"]["to_ms"]
    env = {
        **_env_without_settings(),
        **s3,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    spec_file = write_spec(spec, tmp_path / "spec.toml")

    def run(out: Path, *options: str) -> None:
        argv = [RECOVERY, "recover", "--spec", str(spec_file), "--from", str(lo), "--to", str(hi), "--out", str(out)]
        done = subprocess.run([*argv, *options], env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]

    run(tmp_path / "parts", "--engine", "by-partition")
    run(
        tmp_path / "spark",
        *("--engine", "spark", "--spark-master", url, "--spark-parts", f"s3://{BUCKET}/incidents"),
        *("--chunk-records", str(CHUNK), "--spark-driver-memory", "512m"),
    )
    fixsets = [tmp_path / "parts", tmp_path / "spark"]
    assert (fixsets[1] / "digest.sha256").read_text() == (fixsets[0] / "digest.sha256").read_text()
    review = [pl.read_parquet(d / "review" / "comparison.parquet").sort(SORT) for d in fixsets]
    assert_frame_equal(review[1], review[0])
    assert review[0].filter(pl.col("status") != "ok").height > 0  # the incident's faults left wrong results

    # the tasks ran in the worker's executor, and their parts went through the bucket and were deleted after
    assert list(worker_dir.glob("app-*/*/stderr")), "no executor ran on the worker"
    client = _client(s3)
    written = [v["Key"] for v in client.list_object_versions(Bucket=BUCKET).get("Versions", [])]
    for kind in ("comparison", "truth", "originals"):
        assert any(f"/{kind}-b" in key and key.endswith(".arrow") for key in written), (kind, written)
    left = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert [key for key in left if not key.endswith("/")] == [], left  # only directory markers remain


def test_parts_in_a_missing_bucket_are_a_one_line_error_before_spark_starts(
    s3: dict[str, str], kafka_settings: KafkaSettings, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    spec = _spec(unique_name("spm"))
    incident = simulate(kafka_settings, spec, SimulationParams(symbols=2, events=300, seed=3))
    lo, hi = incident["recovery_range"]["from_ms"], incident["recovery_range"]["to_ms"]
    env = {**os.environ, **s3, "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}
    out = tmp_path / "fx"
    argv = [RECOVERY, "recover", "--spec", str(write_spec(spec, tmp_path / "s.toml")), "--from", str(lo)]
    argv += ["--to", str(hi), "--out", str(out), "--engine", "spark", "--spark-parts", "s3://no-such-bucket/x"]
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "cannot write the Spark parts to s3://no-such-bucket/x" in done.stderr
    assert "--spark-parts" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 60  # Spark never started
    assert not out.exists()
