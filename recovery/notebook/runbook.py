"""Run a notebook runbook as a report: check its parameters, execute it with papermill, render offline HTML.

A run lives in ``reports/<run-id>/``: the executed notebook, a self-contained HTML report (code folded
away, charts drawn by inline scripts, so it opens without network access) and ``run.json`` (notebook,
parameters, status, results, digest, timings). ``reports/index.html`` lists every run.

Parameters are read like a function signature (``papermill.inspect_notebook``) and checked before anything
runs: an unknown name or a value of the wrong type is a one-line :class:`ConfigError` naming the parameter
and listing the known ones. Parameters that look like secrets are refused (they would be written into the
executed notebook); credentials come from the environment (:mod:`recovery.config`), and the values of
secret-looking environment variables are scrubbed from every file a run writes.

A notebook reports results with :func:`record` (shown in the notebook and read back by the runner): a
``digest`` is listed in the index, and ``alert=True`` makes the run exit non-zero so a scheduler can alert.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets as _random
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from recovery.config import PROJECT_ROOT
from recovery.errors import ConfigError
from recovery.notebook.parameters import (
    check_parameters,
    coerce,
    load_params_file,
    notebook_parameters,
    parse_overrides,
    resolve_notebook,
)
from recovery.notebook.reports import (
    EXIT_ALERT,
    EXIT_FAILED,
    EXIT_OK,
    RunRecord,
    format_parameters,
    human_size,
    load_runs,
    render_html,
    render_index,
    write_index,
    write_text,
)
from recovery.notebook.secrets import environment_secrets, is_secret_name, refuse_secrets, scrub, secret_kind

__all__ = [  # the runbook API: what notebooks, the CLI and the report tests call
    "EXIT_ALERT",
    "EXIT_FAILED",
    "EXIT_OK",
    "RESULT_MIME",
    "RunRecord",
    "check_parameters",
    "coerce",
    "environment_secrets",
    "format_parameters",
    "human_size",
    "is_secret_name",
    "load_params_file",
    "load_runs",
    "new_run_id",
    "notebook_parameters",
    "parse_overrides",
    "read_results",
    "record",
    "render_html",
    "render_index",
    "resolve_notebook",
    "run_notebook",
    "scrub",
    "secret_kind",
    "setup_notebook",
    "write_index",
]

RESULT_MIME = "application/vnd.recovery.result+json"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"

# ---------------------------------------------------------------- results recorded by a notebook


def setup_notebook() -> None:
    """Prepare a notebook for reading as a report: charts drawn offline, compact tables."""
    import polars as pl

    from recovery.notebook import charts, tables

    charts.use_offline_renderer()
    tables.use_report_tables()
    pl.Config.set_tbl_hide_dataframe_shape(True)
    pl.Config.set_tbl_hide_column_data_types(True)
    pl.Config.set_tbl_rows(20)
    pl.Config.set_fmt_str_lengths(80)


def record(**values: Any) -> dict[str, Any]:
    """Record results of a notebook run (shown in the notebook, read back by the runner into run.json).

    ``digest`` is listed in the reports index; ``alert=True`` makes ``recovery report`` exit non-zero.
    Values must be JSON-serialisable.
    """
    refuse_secrets(values)
    payload = json.loads(json.dumps(values, default=str))
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        return payload
    if get_ipython() is not None:
        summary = ", ".join(f"{k}={v}" for k, v in payload.items())
        display({RESULT_MIME: payload, "text/plain": f"recorded: {summary}"}, raw=True)
    return payload


def read_results(notebook: Any) -> dict[str, Any]:
    """Every value recorded with :func:`record` in an executed notebook (later records win)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, str | Path) else notebook
    results: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if RESULT_MIME in data:
                value = data[RESULT_MIME]
                results.update(json.loads(value) if isinstance(value, str) else dict(value))
    return results


# ---------------------------------------------------------------- runs


def new_run_id(notebook: str | Path, now: dt.datetime | None = None) -> str:
    """``20260101T120000Z-02_recompute_compare-1a2b``: sortable by time, readable, unique."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{Path(notebook).stem}-{_random.token_hex(2)}"


def kernel_config() -> Any:
    """Kernel settings of a run: its channels encrypted (CurveZMQ) when the kernel supports it.

    An unencrypted local TCP kernel logs a warning on every run ("Kernel is running over TCP without
    encryption"); a kernel that declares Curve support (ipykernel does) is started with keys instead.
    """
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport_encryption = "auto"
    return config


def run_notebook(
    notebook: str | Path,
    parameters: Mapping[str, Any] | None = None,
    out_dir: str | Path = "reports",
    from_text: Iterable[str] = (),
    run_id: str | None = None,
    timeout_s: float | None = None,
    cwd: str | Path | None = None,
) -> RunRecord:
    """Check the parameters, execute the notebook into ``out_dir/<run-id>/``, render HTML, update the index.

    A failing notebook is a run with status ``failed`` (its report shows the error), not an exception;
    bad parameters raise :class:`ConfigError` before anything runs or is written.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path = resolve_notebook(notebook)
    checked = check_parameters(path, parameters or {}, from_text)
    out = Path(out_dir)
    run_id = run_id or new_run_id(path)
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", run_id):
        raise ConfigError(f"run id {run_id!r} is not a plain folder name", hint="use letters, digits, '.', '_', '-'")
    run_dir = out / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise ConfigError(f"run directory {run_dir} already exists", hint="pass another --run-id") from None
    except OSError as exc:
        raise ConfigError(f"cannot create the run directory {run_dir}: {exc.strerror}") from None
    run = RunRecord(run_id, path.stem, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), checked)
    write_text(run_dir / "run.json", run.to_json())
    write_index(out)

    executed = run_dir / f"{path.stem}.ipynb"
    started = time.monotonic()
    try:
        papermill.execute_notebook(
            str(path),
            str(executed),
            parameters=checked,
            kernel_name="python3",
            language="python",
            progress_bar=False,
            execution_timeout=timeout_s,
            cwd=str(cwd) if cwd is not None else None,
            config=kernel_config(),
        )
        run.status = "ok"
    except PapermillExecutionError as exc:
        run.status = "failed"
        run.error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}".strip()
    except Exception as exc:  # a kernel that dies or times out: still a run with a report
        run.status = "failed"
        run.error = f"{type(exc).__name__}: {exc}"
    run.duration_s = round(time.monotonic() - started, 2)
    run.finished_utc = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    secrets = environment_secrets()
    if executed.is_file():
        text, run.secrets_scrubbed = scrub(executed.read_text(encoding="utf-8"), secrets)
        write_text(executed, text)
        run.ipynb = executed.name
        run.results = read_results(executed)
        if run.status == "ok" and run.results.get("alert") is True:
            run.status = "alert"
        html_text = render_html(executed, run)
        html_text, scrubbed = scrub(html_text, secrets)
        run.secrets_scrubbed += scrubbed
        report = run_dir / f"{path.stem}.html"
        write_text(report, html_text)
        run.html = report.name
        run.html_bytes = report.stat().st_size
    if run.error:
        run.error, _ = scrub(run.error, secrets)
    write_text(run_dir / "run.json", run.to_json())
    write_index(out)
    return run
