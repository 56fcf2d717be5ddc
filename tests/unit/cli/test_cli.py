from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recovery.cli import main


def test_help_lists_the_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "kafka" in capsys.readouterr().out


def test_user_error_is_one_line_and_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("RECOVERY_KAFKA_HOME", str(tmp_path))
    assert main(["kafka", "status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("recovery: error: no Kafka cluster configured")
    assert "Traceback" not in err


def test_unreachable_broker_is_a_clear_bounded_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("KAFKA_REQUEST_TIMEOUT_MS", "3000")
    assert main(["kafka", "status"]) == 2
    err = capsys.readouterr().err
    assert "127.0.0.1:1" in err and "make kafka-up" in err


@pytest.mark.parametrize("verb", ["recover", "recompute", "compare", "export", "replay"])
def test_range_steps_default_to_every_usable_core_and_the_auto_client(
    verb: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recovery.cli import build_parser
    from recovery.replay.pool import AUTO, tasks_at_a_time

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    parser = build_parser()  # the defaults are read when the parser is built
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    assert sub.get_default("workers") == AUTO
    assert sub.get_default("client") == "auto"
    assert "3 here" in sub.format_help()
    # the default resolves to the usable cores, one more thread when every partition is held in memory
    assert tasks_at_a_time(AUTO, threads=True, held=False) == 3
    assert tasks_at_a_time(AUTO, threads=True, held=True) == 4
    assert tasks_at_a_time(AUTO, threads=False, held=True) == 3  # worker processes (kafka-python): one per core
    assert tasks_at_a_time(2, threads=True, held=True) == 2  # a number given is kept


def test_spark_options_are_checked_before_anything_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    spec = str(Path(__file__).resolve().parents[3] / "pipeline.toml")
    where = ["recover", "--spec", spec, "--from", "2026-01-05T09:00", "--to", "2026-01-05T10:00", "--engine", "spark"]
    where += ["--out", str(tmp_path / "fixes")]
    assert main([*where, "--spark-driver-memory", "lots"]) == 2
    assert capsys.readouterr().err.startswith("recovery: error: driver_memory must look like 512m or 2g")
    assert main([*where, "--spark-master", "local[two]"]) == 2
    assert "unknown Spark master 'local[two]'" in capsys.readouterr().err
    assert not (tmp_path / "fixes").exists()


def test_a_verb_imports_its_own_module_only() -> None:
    """`recovery VERB ...` builds the parser of that verb alone: the other verbs' modules are not imported."""
    code = (
        "import sys\n"
        "from recovery.cli import main\n"
        "try:\n"
        "    main(['recompute', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('MODULES', sorted(m for m in sys.modules if m.startswith('recovery.cli.cmd_')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--emulate-grace" in out  # the verb's own help
    assert out.splitlines()[-1] == "MODULES ['recovery.cli.cmd_recompute']"


def test_a_word_that_is_no_verb_gets_the_full_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["recomptue", "--spec", "x"])
    err = capsys.readouterr().err
    assert "invalid choice: 'recomptue'" in err
    assert "recompute" in err and "publish" in err


def test_the_console_script_waits_for_its_threads_runs_exit_hooks_flushes_and_keeps_the_exit_code() -> None:
    code = (
        "import atexit, sys, threading, time\n"
        "import recovery.cli as cli\n"
        "cli.main = lambda: 3\n"
        "atexit.register(lambda: print('exit hook ran', flush=False))\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done', flush=False))).start()\n"
        "print('buffered', end='')\n"
        "cli.run()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout == "bufferedthread done\nexit hook ran\n"


@pytest.mark.parametrize("value", ["-1", "two"])
def test_a_bad_number_of_workers_is_refused_when_parsing(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from recovery.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["recompute", "--spec", "x.toml", "--from", "1", "--to", "2", "--out", "y", "--workers", value])
    assert stopped.value.code == 2
    assert f"argument --workers: '{value}': give a number of workers >= 1, or 0 (auto)" in capsys.readouterr().err
