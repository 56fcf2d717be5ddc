"""The runner checks parameters before running, refuses secrets, scrubs them, and indexes runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import nbformat
import pytest

from recovery.cli import main
from recovery.errors import ConfigError
from recovery.notebook import runbook

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny_report.ipynb"


def test_parameters_are_read_like_a_signature() -> None:
    params = runbook.notebook_parameters(TINY)
    assert {name: p.type_name for name, p in params.items()} == {
        "rows": "int",
        "label": "str",
        "ratio": "float",
        "enabled": "bool",
        "keys": "list[str]",
        "max_wrong": "int",
    }
    assert params["rows"].default == "20"
    assert params["rows"].help == "results to fake"


def test_command_line_values_are_parsed_to_the_declared_types() -> None:
    text = {"rows": "40", "ratio": "0.5", "enabled": "false", "keys": "A, B,C", "label": "123"}
    checked = runbook.check_parameters(TINY, text, from_text=text)
    assert checked == {"rows": 40, "ratio": 0.5, "enabled": False, "keys": ["A", "B", "C"], "label": "123"}


def test_yaml_values_keep_their_types() -> None:
    values = {"rows": 7, "ratio": 1, "keys": ["X"], "label": dt.date(2026, 1, 2)}
    checked = runbook.check_parameters(TINY, values)
    assert checked == {"rows": 7, "ratio": 1.0, "keys": ["X"], "label": "2026-01-02"}
    assert isinstance(checked["ratio"], float)


def test_a_typo_names_the_parameter_and_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        runbook.check_parameters(TINY, {"rowz": "5"}, from_text=["rowz"])
    message = str(info.value)
    assert "unknown parameter 'rowz' for notebook tiny_report (did you mean 'rows'?)" in message
    assert "known parameters: rows (int), label (str), ratio (float), enabled (bool), keys (list[str])" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("values", "text", "match"),
    [
        ({"rows": "five"}, True, r"parameter 'rows' of notebook tiny_report expects int, got 'five'"),
        ({"rows": 2.5}, False, r"'rows' .* expects int, got 2\.5"),
        ({"rows": True}, False, r"'rows' .* expects int, got True"),
        ({"enabled": "maybe"}, True, r"'enabled' .* expects bool, got 'maybe'"),
        ({"enabled": 1}, False, r"'enabled' .* expects bool, got 1"),
        ({"keys": "A"}, False, r"'keys' .* expects list\[str\], got 'A'"),
        ({"keys": [["A"]]}, False, r"'keys' .* expects list\[str\]"),
        ({"ratio": "x"}, False, r"'ratio' .* expects float, got 'x'"),
    ],
)
def test_a_wrong_type_is_refused(values: dict[str, object], text: bool, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        runbook.check_parameters(TINY, values, from_text=values if text else ())


@pytest.mark.parametrize(
    ("type_name", "value", "expected"),
    [
        ("Optional[int]", "None", None),
        ("Optional[int]", "3", 3),
        ("int | None", "none", None),
        ("dict", '{"a": 1}', {"a": 1}),
        ("list[int]", "[1, 2]", [1, 2]),
        ("list[int]", "1,2", [1, 2]),
        ("int", "60_000", 60_000),
        ("", "12", 12),
    ],
)
def test_coerce_from_text(type_name: str, value: str, expected: object) -> None:
    assert runbook.coerce(type_name, value, from_text=True) == expected


def test_typo_on_the_command_line_fails_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reports"
    assert main(["report", str(TINY), "-p", "rowz", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recovery: error: unknown parameter 'rowz'")
    assert err.count("\n") == 1
    assert not out.exists()


def test_params_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("- rows\n- 5\n")
    with pytest.raises(ConfigError, match="expected a mapping of parameter names to values"):
        runbook.load_params_file(path)
    with pytest.raises(ConfigError, match="not found"):
        runbook.load_params_file(tmp_path / "missing.yaml")


def test_check_only_prints_the_checked_parameters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("rows: 3\nkeys: [A]\n")
    assert main(["report", str(TINY), "-f", str(path), "-p", "rows", "4", "--check"]) == 0
    assert capsys.readouterr().out.strip() == 'parameters ok: rows=4, keys=["A"]'


def test_unknown_notebook_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="notebook 'nope' not found"):
        runbook.resolve_notebook("nope")


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "name", ["password", "sasl_password", "db_passwd", "api_key", "apiKey", "token", "auth_token", "client_secret"]
)
def test_secret_looking_names(name: str) -> None:
    assert runbook.is_secret_name(name)


@pytest.mark.parametrize("name", ["keys", "key", "monkey", "author", "keyspace", "topic", "max_wrong", "tokenizer"])
def test_ordinary_names(name: str) -> None:
    assert not runbook.is_secret_name(name)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE...", "a private key"),
        ("SASL_SSL://alice:hunter2@kafka:9093", "credentials in a URL"),
        (["ok", "AKIAABCDEFGHIJKLMNOP"], "an AWS access key"),
        ({"nested": "ghp_" + "a" * 36}, "a GitHub token"),
        ("kafka-1:9092,kafka-2:9092", None),
        ("https://example.com/path", None),
    ],
)
def test_secret_looking_values(value: object, kind: str | None) -> None:
    assert runbook.secret_kind(value) == kind


def test_secret_parameters_are_refused_before_running() -> None:
    with pytest.raises(ConfigError, match="parameter 'sasl_password' looks like a secret"):
        runbook.check_parameters(TINY, {"sasl_password": "x"})
    with pytest.raises(ConfigError, match=r"parameter 'label' looks like a secret \(a private key\)"):
        runbook.check_parameters(TINY, {"label": "-----BEGIN PRIVATE KEY-----"})


def test_environment_secrets_skip_short_values_and_the_working_directory() -> None:
    env = {"KAFKA_SASL_PASSWORD": "s3cret-value", "API_TOKEN": "abc", "PWD": "/work", "HOME": "/root"}
    assert runbook.environment_secrets(env) == ["s3cret-value"]


def test_scrub_replaces_plain_and_json_escaped_values() -> None:
    text = 'print: pa"ss\\word\n{"text": "pa\\"ss\\\\word"}'
    scrubbed, count = runbook.scrub(text, ['pa"ss\\word'])
    assert scrubbed == 'print: ***\n{"text": "***"}'
    assert count == 2


# ---------------------------------------------------------------- results and index


def test_results_recorded_in_a_notebook_are_read_back() -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("runbook.record(...)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={runbook.RESULT_MIME: {"wrong": 1, "digest": "a"}}),
        nbformat.v4.new_output("display_data", data={runbook.RESULT_MIME: {"wrong": 2}, "text/plain": "x"}),
    ]
    nb.cells = [cell]
    assert runbook.read_results(nb) == {"wrong": 2, "digest": "a"}


def test_record_outside_a_notebook_returns_the_values() -> None:
    assert runbook.record(count=3, when=dt.date(2026, 1, 1)) == {"count": 3, "when": "2026-01-01"}
    with pytest.raises(ConfigError, match="looks like a secret"):
        runbook.record(token="abc")


def make_run(out: Path, run_id: str, started: str, **fields: object) -> runbook.RunRecord:
    run = runbook.RunRecord(run_id, "02_recompute_compare", started, {"incident": "<demo>"}, **fields)  # type: ignore[arg-type]
    (out / run_id).mkdir(parents=True)
    (out / run_id / "run.json").write_text(run.to_json())
    return run


def test_index_lists_runs_newest_first_with_status_and_digest(tmp_path: Path) -> None:
    make_run(tmp_path, "r1", "2026-01-01T10:00:00+00:00", status="ok", html="a.html", html_bytes=1_234_567)
    make_run(tmp_path, "r2", "2026-01-02T10:00:00+00:00", status="alert", results={"digest": "d" * 64})
    make_run(tmp_path, "r3", "2026-01-03T10:00:00+00:00", status="failed", error="cell 3: KeyError: 'x'")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    index = runbook.write_index(tmp_path).read_text()
    assert index.index("r3") < index.index("r2") < index.index("r1")
    assert "3 run(s)" in index
    assert 'href="r1/a.html"' in index and "1.2 MB" in index
    assert "d" * 64 in index
    assert "cell 3: KeyError: &#x27;x&#x27;" in index
    assert "incident=&quot;&lt;demo&gt;&quot;" in index  # parameters are escaped
    assert '<span class="rc-status rc-alert">alert</span>' in index


def test_empty_index_says_how_to_make_a_run(tmp_path: Path) -> None:
    assert "No runs yet" in runbook.write_index(tmp_path / "reports").read_text()


def test_run_record_round_trips_and_maps_status_to_exit_code() -> None:
    run = runbook.RunRecord("r", "nb", "2026-01-01T00:00:00+00:00", {"a": 1}, status="alert", results={"digest": "x"})
    again = runbook.RunRecord.from_json(run.to_json())
    assert again == run
    assert again.digest == "x"
    assert (again.exit_code, runbook.RunRecord("r", "nb", "t", {}, status="failed").exit_code) == (3, 1)


def test_run_ids_sort_by_time() -> None:
    early = runbook.new_run_id("notebooks/01_explore_incident.ipynb", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    late = runbook.new_run_id("01_explore_incident", dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    assert early.startswith("20260101T000000Z-01_explore_incident-")
    assert early < late


def test_a_parameter_papermill_cannot_read_is_an_error(tmp_path: Path) -> None:
    nb = nbformat.read(str(TINY), as_version=4)
    nb.cells[0].source += '\nmode: str = "a"  # a or b; "" = default'  # papermill's parser drops this line
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, str(path))
    with pytest.raises(ConfigError, match=r"papermill cannot read parameter\(s\) mode of bad\.ipynb"):
        runbook.notebook_parameters(path)


@pytest.mark.parametrize("run_id", ["../escape", "a/b", ".hidden", ""])
def test_run_ids_must_be_plain_folder_names(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(ConfigError, match="is not a plain folder name"):
        runbook.run_notebook(TINY, {}, out_dir=tmp_path, run_id=run_id or "a b")
    assert list(tmp_path.iterdir()) == []
