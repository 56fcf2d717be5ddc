"""The ``recovery`` command line: a thin layer that parses arguments and calls one package function.

Each ``cmd_*.py`` module in this package contributes one verb, its name with ``-`` for ``_``, through
``register(subparsers)``. A command line that names a verb imports that verb's module only (the others import
half of the package); help and mistakes get the parser of every verb.
A :class:`~recovery.errors.RecoveryError` becomes one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import os
import pkgutil
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from recovery import __version__
from recovery.errors import RecoveryError
from recovery.memory import tune_allocators

EPILOG = """\
examples:
  recovery kafka status                      broker reachable? topics, partitions, end offsets
  recovery simulate --spec pipeline.toml     produce a simulated incident
  recovery recover --spec pipeline.toml --from 2026-01-01T00:00 --to 2026-01-01T01:00 --out fixes/inc-1
  recovery approve fixes/inc-1 --reviewer alice
  recovery publish fixes/inc-1

connection: KAFKA_BOOTSTRAP_SERVERS (default: the local broker of `make kafka-up`),
KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE, ...
"""


def verb_modules() -> list[str]:
    """The names of the verb modules (``cmd_*``), sorted."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if info.name.startswith("cmd_"))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every verb registered, or only the verb of the module ``only``."""
    parser = argparse.ArgumentParser(
        prog="recovery",
        description="Recover and recalculate missing or wrong results of a Kafka event pipeline.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"recovery {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in verb_modules():
        if only is None or name == only:
            importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _module_of_verb(argv: Sequence[str]) -> str | None:
    """The module of the verb ``argv`` names first (None for help, the version or a word that is no verb)."""
    for arg in argv:
        if arg.startswith("-"):
            return None  # an option before the verb: only --help and --version exist there
        name = "cmd_" + arg.replace("-", "_")
        return name if name in verb_modules() else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recovery`` console script."""
    tune_allocators()  # before polars is imported by the verbs
    args_list = sys.argv[1:] if argv is None else list(argv)
    # importing the verb (polars, the package) makes some 10^5 objects that live as long as the process: the
    # cyclic collector would go through them again and again (10-20 ms of a 0.2 s start), so it waits, and
    # then leaves them out of its rounds
    collecting = gc.isenabled()
    gc.disable()
    try:
        parser = build_parser(only=_module_of_verb(args_list))
    finally:
        if collecting:
            gc.freeze()
            gc.enable()
    args = parser.parse_args(args_list)
    try:
        result = args.func(args)
    except RecoveryError as exc:
        print(f"recovery: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("recovery: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


def run() -> NoReturn:
    """The ``recovery`` console script: :func:`main`, then an exit without the interpreter's teardown.

    Tearing down polars and its thread pool takes the interpreter 30-40 ms once the work is done (6 ms without
    it), a twentieth of a 1M-event recompute. The command finishes what that teardown would have: it waits for
    its threads (readers still closing), runs the exit hooks (scratch directories, logging) and flushes its
    output, then ends. An uncaught error still goes the usual way (traceback, teardown).
    """
    code = main()
    main_thread = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main_thread and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing more can be written
            stream.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
