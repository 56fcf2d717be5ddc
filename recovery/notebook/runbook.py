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

import ast
import datetime as dt
import difflib
import html
import json
import os
import re
import secrets as _random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recovery.config import PROJECT_ROOT
from recovery.errors import ConfigError

RESULT_MIME = "application/vnd.recovery.result+json"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ALERT = 3
STATUS_EXIT = {"ok": EXIT_OK, "failed": EXIT_FAILED, "alert": EXIT_ALERT}
SCRUBBED = "***"
MIN_SECRET_CHARS = 4  # shorter environment values are too common to scrub safely

# a parameter name is secret-looking when one of its words is one of these...
SECRET_WORDS = frozenset(
    {"password", "passwd", "passphrase", "pwd", "secret", "secrets", "token", "tokens", "credential", "credentials"}
)
# ...or when it contains one of these
NOT_SECRET_VARS = frozenset({"PWD", "OLDPWD"})  # the shell's working directories, not passwords
SECRET_PARTS = ("api_key", "apikey", "private_key", "access_key", "secret_key", "signing_key", "key_material")
SECRET_VALUE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("credentials in a URL", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)),
    ("an AWS access key", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b")),
    ("a Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("a JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
)


# ---------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Parameter:
    """One parameter of a notebook, as declared in its ``parameters`` cell."""

    name: str
    type_name: str  # the annotation ("int", "list[str]", "Optional[str]"); "" when not annotated
    default: str  # the default as written in the cell
    help: str

    def describe(self) -> str:
        return f"{self.name} ({self.type_name or 'any'})"


def resolve_notebook(notebook: str | Path) -> Path:
    """The notebook file for a path, or a name in ``notebooks/`` (``02_recompute_compare``)."""
    path = Path(notebook)
    candidates = [path, path.with_suffix(".ipynb"), NOTEBOOKS_DIR / path.name, NOTEBOOKS_DIR / f"{path.name}.ipynb"]
    for candidate in candidates:
        if candidate.suffix == ".ipynb" and candidate.is_file():
            return candidate
    known = ", ".join(p.stem for p in sorted(NOTEBOOKS_DIR.glob("*.ipynb"))) or "none"
    raise ConfigError(f"notebook {str(notebook)!r} not found", hint=f"notebooks in {NOTEBOOKS_DIR}: {known}")


def notebook_parameters(notebook: str | Path) -> dict[str, Parameter]:
    """The parameters declared in the notebook's cell tagged ``parameters`` (name -> :class:`Parameter`)."""
    import papermill

    path = resolve_notebook(notebook)
    try:
        inspected = papermill.inspect_notebook(str(path))
    except Exception as exc:  # papermill raises bare ValueErrors for notebooks it cannot read
        raise ConfigError(f"cannot read the parameters of {path}: {exc}") from None
    unreadable = sorted(_assigned_names(path) - set(inspected))
    if unreadable:
        raise ConfigError(
            f"papermill cannot read parameter(s) {', '.join(unreadable)} of {path.name}",
            hint="keep each on one line as `name: type = value  # help`, without '=' or quotes in the comment",
        )
    params = {}
    for name, info in inspected.items():
        type_name = info.get("inferred_type_name") or ""
        params[name] = Parameter(name, "" if type_name == "None" else type_name, info.get("default", ""), info["help"])
    return params


def _assigned_names(path: Path) -> set[str]:
    """Names the notebook's ``parameters`` cell assigns (what papermill should have found)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            try:
                tree = ast.parse(cell.source)
            except SyntaxError as exc:
                raise ConfigError(f"the parameters cell of {path.name} is not valid Python: {exc}") from None
            names: set[str] = set()
            for node in tree.body:
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [node.target]
                    if isinstance(node, ast.AnnAssign)
                    else []
                )
                names.update(t.id for t in targets if isinstance(t, ast.Name))
            return names
    return set()


def _known(params: Mapping[str, Parameter]) -> str:
    return "known parameters: " + (", ".join(p.describe() for p in params.values()) or "none")


def _split_type(type_name: str) -> tuple[str, list[str]]:
    """``"list[str]"`` -> ``("list", ["str"])``; ``"Optional[int]"`` -> ``("Optional", ["int"])``."""
    text = type_name.replace(" ", "")
    if "|" in text:
        parts = text.split("|")
        rest = [p for p in parts if p not in ("None", "NoneType")]
        if len(rest) < len(parts):
            return "Optional", ["|".join(rest)]
    match = re.fullmatch(r"(?:typing\.)?(\w+)(?:\[(.*)\])?", text)
    if not match:
        return text, []
    outer, inner = match.group(1), match.group(2)
    args: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(inner or ""):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            args.append(inner[start:i])
            start = i + 1
    if inner:
        args.append(inner[start:])
    return {"List": "list", "Dict": "dict"}.get(outer, outer), args


class _Mismatch(Exception):
    pass


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise _Mismatch


def coerce(type_name: str, value: Any, from_text: bool = False) -> Any:
    """``value`` as the declared type (``from_text``: a ``-p`` string to parse); raises ``ValueError``."""
    try:
        return _coerce(type_name, value, from_text)
    except (_Mismatch, ValueError, TypeError, yaml.YAMLError):
        raise ValueError(f"expects {type_name}, got {value!r}") from None


def _coerce(type_name: str, value: Any, from_text: bool) -> Any:
    outer, args = _split_type(type_name)
    if outer in ("", "Any", "object"):
        return yaml.safe_load(value) if from_text else value
    if outer == "Optional":
        if value is None or (from_text and str(value).strip().lower() in ("none", "null", "~")):
            return None
        return _coerce(args[0] if args else "", value, from_text)
    if outer == "int":
        if from_text:
            return int(str(value).strip())
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch
        return value
    if outer == "float":
        if from_text:
            return float(str(value).strip())
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Mismatch
        return float(value)
    if outer == "bool":
        if from_text:
            return _parse_bool(str(value))
        if not isinstance(value, bool):
            raise _Mismatch
        return value
    if outer == "str":
        if from_text or isinstance(value, str):
            return str(value)
        if isinstance(value, dt.datetime | dt.date):  # YAML reads unquoted timestamps as dates
            return value.isoformat()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise _Mismatch
    if outer in ("list", "tuple", "set"):
        if from_text:
            text = str(value).strip()
            value = yaml.safe_load(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
            from_text = not text.startswith("[")
        if not isinstance(value, list | tuple):
            raise _Mismatch
        item = args[0] if args else ""
        return [_coerce(item, v, from_text) for v in value]
    if outer == "dict":
        if from_text:
            value = yaml.safe_load(str(value))
        if not isinstance(value, dict):
            raise _Mismatch
        return dict(value)
    return yaml.safe_load(value) if from_text else value  # an annotation we do not check


def _default_type(param: Parameter) -> str:
    """Type of an unannotated parameter, from its default literal ("" when unknown)."""
    try:
        default = ast.literal_eval(param.default)
    except (ValueError, SyntaxError):
        return ""
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(type(default), "")


def check_parameters(notebook: str | Path, values: Mapping[str, Any], from_text: Iterable[str] = ()) -> dict[str, Any]:
    """``values`` checked against the notebook's parameters and converted to their types.

    Names in ``from_text`` came from the command line as strings and are parsed. An unknown name, a
    wrong type or a secret-looking parameter is a :class:`ConfigError` before anything runs.
    """
    path = resolve_notebook(notebook)
    params = notebook_parameters(path)
    text_names = set(from_text)
    refuse_secrets(values)
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in params:
            close = difflib.get_close_matches(name, list(params), n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown parameter {name!r} for notebook {path.stem}{guess}", hint=_known(params))
        param = params[name]
        type_name = param.type_name or _default_type(param)
        try:
            checked[name] = coerce(type_name, value, from_text=name in text_names)
        except ValueError as exc:
            raise ConfigError(f"parameter {name!r} of notebook {path.stem} {exc}", hint=_known(params)) from None
    return checked


def parse_overrides(pairs: Sequence[Sequence[str]]) -> dict[str, str]:
    """``-p name value`` pairs as a mapping (values stay strings until checked against the notebook)."""
    result: dict[str, str] = {}
    for pair in pairs:
        if len(pair) != 2:
            raise ConfigError(f"-p takes a name and a value, got {list(pair)}", hint="e.g. -p hours 24")
        result[pair[0]] = pair[1]
    return result


def load_params_file(path: str | Path) -> dict[str, Any]:
    """The parameters in a YAML file (a mapping of name to value)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"parameter file {str(p)!r} not found", hint="parameter files for the demo: notebooks/params/"
        )
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ConfigError(f"{p}: expected a mapping of parameter names to values", hint="e.g. `hours: 24`")
    return data


# ---------------------------------------------------------------- secrets


def is_secret_name(name: str) -> bool:
    """True for parameter or variable names that usually hold credentials (password, token, api_key, ...)."""
    lowered = name.lower()
    words = set(re.split(r"[^a-z0-9]+", lowered))
    return bool(words & SECRET_WORDS) or any(part in lowered for part in SECRET_PARTS)


def secret_kind(value: Any) -> str | None:
    """What kind of secret ``value`` (or a string inside it) looks like, or None."""
    if isinstance(value, str):
        for kind, pattern in SECRET_VALUE_PATTERNS:
            if pattern.search(value):
                return kind
        return None
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, list | tuple) else ()
    for item in items:
        found = secret_kind(item)
        if found:
            return found
    return None


def refuse_secrets(values: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` when a parameter looks like a secret (by its name or its value)."""
    for name, value in values.items():
        kind: str | None = "its name" if is_secret_name(name) else secret_kind(value)
        if kind:
            raise ConfigError(
                f"parameter {name!r} looks like a secret ({kind}); secrets are never passed to notebooks because "
                "the executed notebook and its report would contain them",
                hint="put credentials in the environment (KAFKA_SASL_PASSWORD, KAFKA_SSL_PASSWORD, ...)",
            )


def environment_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables (what a report must never contain), longest first."""
    env = os.environ if env is None else env
    values = {
        v for k, v in env.items() if is_secret_name(k) and k not in NOT_SECRET_VARS and len(v) >= MIN_SECRET_CHARS
    }
    return sorted(values, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> tuple[str, int]:
    """``text`` with every occurrence of each secret replaced by ``***``, and the number of replacements."""
    count = 0
    for secret in secrets:
        if secret and secret in text:
            count += text.count(secret)
            text = text.replace(secret, SCRUBBED)
        escaped = json.dumps(secret)[1:-1]  # the same value inside a JSON string (a saved notebook)
        if escaped != secret and escaped in text:
            count += text.count(escaped)
            text = text.replace(escaped, SCRUBBED)
    return text, count


# ---------------------------------------------------------------- results recorded by a notebook


def setup_notebook() -> None:
    """Prepare a notebook for reading as a report: charts drawn offline, compact tables."""
    import polars as pl

    from recovery.notebook import charts

    charts.use_offline_renderer()
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


@dataclass
class RunRecord:
    """What ``run.json`` holds for one run."""

    run_id: str
    notebook: str
    started_utc: str
    parameters: dict[str, Any]
    status: str = "running"  # running | ok | failed | alert
    finished_utc: str | None = None
    duration_s: float | None = None
    error: str | None = None
    results: dict[str, Any] = field(default_factory=dict)
    html: str | None = None  # file names inside the run directory
    ipynb: str | None = None
    html_bytes: int | None = None
    secrets_scrubbed: int = 0

    @property
    def digest(self) -> str | None:
        value = self.results.get("digest")
        return str(value) if value else None

    @property
    def exit_code(self) -> int:
        return STATUS_EXIT.get(self.status, EXIT_FAILED)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def new_run_id(notebook: str | Path, now: dt.datetime | None = None) -> str:
    """``20260101T120000Z-02_recompute_compare-1a2b``: sortable by time, readable, unique."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{Path(notebook).stem}-{_random.token_hex(2)}"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


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
    _write_text(run_dir / "run.json", run.to_json())
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
        _write_text(executed, text)
        run.ipynb = executed.name
        run.results = read_results(executed)
        if run.status == "ok" and run.results.get("alert") is True:
            run.status = "alert"
        html_text = render_html(executed, run)
        html_text, scrubbed = scrub(html_text, secrets)
        run.secrets_scrubbed += scrubbed
        report = run_dir / f"{path.stem}.html"
        _write_text(report, html_text)
        run.html = report.name
        run.html_bytes = report.stat().st_size
    if run.error:
        run.error, _ = scrub(run.error, secrets)
    _write_text(run_dir / "run.json", run.to_json())
    write_index(out)
    return run


# ---------------------------------------------------------------- HTML

REPORT_CSS = """
body.jp-Notebook { max-width: 1100px; margin: 0 auto; padding: 0 24px 48px; }
.rc-banner { font-family: var(--jp-ui-font-family, sans-serif); border-bottom: 1px solid #d0d5dc;
  margin: 16px 0 8px; padding: 8px 0 12px; color: #2b2f36; }
.rc-banner h1 { font-size: 20px; margin: 0 0 6px; }
.rc-banner .rc-meta { font-size: 13px; color: #5c677d; }
.rc-banner code { font-size: 12px; }
.rc-status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; font-size: 12px; }
.rc-ok { background: #d8f3e6; color: #1b6e47; } .rc-failed { background: #fadadd; color: #a4161a; }
.rc-alert { background: #ffe8cc; color: #8a4b00; } .rc-running { background: #e7ecf3; color: #394a60; }
details.rc-code > summary { cursor: pointer; font-size: 11px; color: #8a93a0; margin: 2px 0; list-style: none; }
details.rc-code > summary::before { content: "\\25B8  "; }
details.rc-code[open] > summary::before { content: "\\25BE  "; }
.jp-InputPrompt, .jp-OutputPrompt { display: none !important; }
.jp-Cell { padding-left: 0; }
.recovery-chart { margin: 4px 0 12px; }
"""

REPORT_TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{#- no network at reading time: drop every script the lab template loads from a CDN -#}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}<style type="text/css">{{ resources.recovery.css }}</style>{% endblock extra_css %}
{%- block body_header -%}
{{ super() }}
<header class="rc-banner">
<h1>{{ resources.recovery.notebook | e }}</h1>
<div class="rc-meta">run <code>{{ resources.recovery.run_id | e }}</code> &middot;
started {{ resources.recovery.started | e }} &middot; {{ resources.recovery.duration | e }} &middot;
<span class="rc-status rc-{{ resources.recovery.status | e }}">{{ resources.recovery.status | e }}</span>
{%- if resources.recovery.error %} &middot; {{ resources.recovery.error | e }}{% endif %}</div>
<div class="rc-meta">parameters: <code>{{ resources.recovery.parameters | e }}</code></div>
</header>
{%- endblock body_header -%}
{% block input_group -%}
{%- set tags = cell.metadata.get('tags', []) -%}
<details class="rc-code"{% if 'injected-parameters' in tags %} open{% endif %}>
<summary>{{ 'parameters' if 'parameters' in tags else ('parameters of this run' if 'injected-parameters' in tags
  else 'code') }}</summary>
{{ super() }}
</details>
{% endblock input_group %}
"""


def format_parameters(parameters: Mapping[str, Any], limit: int = 60) -> str:
    """``name=value`` pairs on one line, long values shortened (for banners and the index)."""
    parts = []
    for name, value in parameters.items():
        text = json.dumps(value, default=str)
        parts.append(f"{name}={text if len(text) <= limit else text[: limit - 3] + '...'}")
    return ", ".join(parts) or "(defaults)"


def render_html(executed: str | Path, run: RunRecord) -> str:
    """The executed notebook as one HTML page: code folded, no external resources, a run banner."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed), as_version=4)
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"recovery_report.html.j2": REPORT_TEMPLATE})],
        template_file="recovery_report.html.j2",
    )
    resources = {
        "metadata": {"name": f"{run.notebook} {run.run_id}"},
        "recovery": {
            "css": REPORT_CSS,
            "notebook": run.notebook,
            "run_id": run.run_id,
            "started": run.started_utc,
            "duration": f"{run.duration_s:.1f} s" if run.duration_s is not None else "",
            "status": run.status,
            "error": run.error or "",
            "parameters": format_parameters(run.parameters),
        },
    }
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return str(body)


def load_runs(out_dir: str | Path) -> list[RunRecord]:
    """Every run under ``out_dir``, newest first (directories without a readable run.json are skipped)."""
    runs = []
    for path in Path(out_dir).glob("*/run.json"):
        try:
            runs.append(RunRecord.from_json(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(runs, key=lambda r: (r.started_utc, r.run_id), reverse=True)


INDEX_CSS = """
body { font-family: 'Source Sans Pro', 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px auto;
  max-width: 1200px; color: #2b2f36; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } p { color: #5c677d; margin-top: 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e4e7ec; vertical-align: top; }
th { background: #f4f6f9; font-weight: 600; }
td.params, td.digest { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }
.rc-status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; font-size: 12px; }
.rc-ok { background: #d8f3e6; color: #1b6e47; } .rc-failed { background: #fadadd; color: #a4161a; }
.rc-alert { background: #ffe8cc; color: #8a4b00; } .rc-running { background: #e7ecf3; color: #394a60; }
"""


def _size(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n / 1000:.0f} kB"


def render_index(runs: Sequence[RunRecord]) -> str:
    """The reports index page: one row per run, newest first, links relative to the reports folder."""
    rows = []
    for run in runs:
        esc = html.escape
        links = []
        if run.html:
            links.append(f'<a href="{esc(run.run_id)}/{esc(run.html)}">report</a> {_size(run.html_bytes)}')
        if run.ipynb:
            links.append(f'<a href="{esc(run.run_id)}/{esc(run.ipynb)}">notebook</a>')
        status = f'<span class="rc-status rc-{esc(run.status)}">{esc(run.status)}</span>'
        if run.error:
            status += f"<br>{esc(run.error)}"
        duration = f"{run.duration_s:.1f} s" if run.duration_s is not None else ""
        rows.append(
            "<tr>"
            f"<td>{esc(run.started_utc.replace('+00:00', 'Z'))}</td>"
            f"<td>{esc(run.notebook)}<br><small>{esc(run.run_id)}</small></td>"
            f'<td class="params">{esc(format_parameters(run.parameters))}</td>'
            f"<td>{status}</td><td>{duration}</td>"
            f'<td class="digest">{esc(run.digest or "")}</td>'
            f"<td>{' &middot; '.join(links)}</td>"
            "</tr>"
        )
    body = "\n".join(rows) or '<tr><td colspan="7">No runs yet: <code>recovery report NOTEBOOK</code></td></tr>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>recovery reports</title>
<style>{INDEX_CSS}</style></head>
<body><h1>Reports</h1><p>{len(runs)} run(s), newest first. Times are UTC.</p>
<table><thead><tr><th>time</th><th>notebook</th><th>parameters</th><th>status</th><th>duration</th>
<th>digest</th><th>files</th></tr></thead>
<tbody>
{body}
</tbody></table></body></html>
"""


def write_index(out_dir: str | Path) -> Path:
    """(Re)write ``out_dir/index.html`` from the runs found there."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    _write_text(index, render_index(load_runs(out)))
    return index
