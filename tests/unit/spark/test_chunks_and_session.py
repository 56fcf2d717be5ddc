"""Offset chunks and the Spark session's checks (no Spark started here)."""

from __future__ import annotations

import sys

import pytest

from recovery.errors import ConfigError
from recovery.spark.chunks import Chunk, buckets_for, split, split_all
from recovery.spark.session import SparkOptions, check_master, check_reachable, require_pyspark


def test_a_range_is_cut_into_chunks_that_cover_it_exactly_once() -> None:
    assert split("raw", 2, 10, 35, 10) == [Chunk("raw", 2, 10, 20), Chunk("raw", 2, 20, 30), Chunk("raw", 2, 30, 35)]
    assert split("raw", 0, 5, 5, 10) == []
    chunks = split_all("outputs", [(0, 0, 3), (1, 7, 9)], 2)
    assert [(c.partition, c.start, c.end) for c in chunks] == [(0, 0, 2), (0, 2, 3), (1, 7, 9)]
    assert sum(c.records for c in chunks) == 3 + 2


def test_buckets_follow_the_chunks_of_a_partition() -> None:
    assert [buckets_for(n, 100) for n in (0, 1, 100, 101, 1_000)] == [1, 1, 1, 2, 10]


def test_bad_chunk_sizes_and_masters_are_refused() -> None:
    with pytest.raises(ConfigError, match="chunk_records must be >= 1"):
        split("raw", 0, 0, 10, 0)
    with pytest.raises(ConfigError, match="unknown Spark master 'local\\[two\\]'"):
        SparkOptions("local[two]")
    with pytest.raises(ConfigError, match="driver_memory"):
        SparkOptions(driver_memory="lots")
    for master in ("local", "local[2]", "local[*]", "spark://h:7077", "yarn", "k8s://https://k:6443"):
        assert check_master(master) == master


def test_an_unreachable_standalone_master_is_named_with_what_to_do() -> None:
    with pytest.raises(ConfigError, match="cannot reach the Spark master spark://127.0.0.1:9.*local\\[2\\]"):
        check_reachable("spark://127.0.0.1:9")


def test_yarn_without_its_configuration_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.delenv("YARN_CONF_DIR", raising=False)
    with pytest.raises(ConfigError, match="HADOOP_CONF_DIR"):
        check_reachable("yarn")


def test_a_missing_pyspark_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark then raises ImportError
    with pytest.raises(ConfigError, match="recovery\\[spark\\]"):
        require_pyspark()
