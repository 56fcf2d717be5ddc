"""A run's record (``run.json``), its offline HTML (code folded, inline scripts) and the index of every run."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ALERT = 3
STATUS_EXIT = {"ok": EXIT_OK, "failed": EXIT_FAILED, "alert": EXIT_ALERT}


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


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


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


def human_size(n: int | None) -> str:
    """A byte count for people: 12.3 kB, 4.5 MB."""
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
            links.append(f'<a href="{esc(run.run_id)}/{esc(run.html)}">report</a> {human_size(run.html_bytes)}')
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
    write_text(index, render_index(load_runs(out)))
    return index
