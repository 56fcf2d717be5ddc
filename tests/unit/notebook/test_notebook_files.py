"""The committed runbooks: outputs cleared, typed and commented parameters, no logic, matching parameter files."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from recovery.cli import main
from recovery.config import PROJECT_ROOT
from recovery.notebook import runbook

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
PARAMS = sorted((PROJECT_ROOT / "notebooks" / "params").glob("*.yaml"))
PARAMS_NOTEBOOK = {
    "demo_01": "01_explore_incident",
    "demo_02": "02_recompute_compare",
    "demo_03": "03_publish_fixes",
    "reconcile": "00_reconciliation",
}
# what a runbook cell may contain besides calls: imports from the package and plain assignments of results
ALLOWED_STATEMENTS = (ast.Expr, ast.Assign, ast.ImportFrom)


def test_the_four_runbooks_are_there() -> None:
    assert [p.stem for p in NOTEBOOKS] == [
        "00_reconciliation",
        "01_explore_incident",
        "02_recompute_compare",
        "03_publish_fixes",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_cleared(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: run `Clear all outputs`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_holds_typed_commented_parameters(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "code" and first.metadata.get("tags") == ["parameters"]
    params = runbook.notebook_parameters(path)  # also fails when papermill cannot read one of them
    assert params
    for param in params.values():
        assert param.type_name in ("str", "int", "float", "bool"), param
        assert param.help, f"{path.stem}: parameter {param.name} has no comment"
        assert not runbook.is_secret_name(param.name)
    tree = ast.parse(first.source)
    assert all(isinstance(node, ast.AnnAssign) for node in tree.body)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_other_cells_only_call_the_package(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells[1:]:
        if cell.cell_type != "code":
            continue
        for node in ast.parse(cell.source).body:
            assert isinstance(node, ALLOWED_STATEMENTS), f"{path.stem}: logic in a cell: {ast.unparse(node)}"
            if isinstance(node, ast.ImportFrom):
                assert node.module == "recovery.notebook", f"{path.stem}: imports {node.module}"
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, ast.Lambda | ast.ListComp | ast.DictComp | ast.BinOp), ast.unparse(node)


@pytest.mark.parametrize("path", PARAMS, ids=lambda p: p.stem)
def test_parameter_files_match_their_notebook(path: Path) -> None:
    values = runbook.load_params_file(path)
    assert runbook.check_parameters(PARAMS_NOTEBOOK[path.stem], values)


def test_every_parameter_file_is_known() -> None:
    assert sorted(p.stem for p in PARAMS) == sorted(PARAMS_NOTEBOOK)


def test_a_typo_in_a_runbook_parameter_fails_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["report", "00_reconciliation", "-p", "hourz", "5", "--out", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown parameter 'hourz' for notebook 00_reconciliation (did you mean 'hours'?)" in err
    assert "known parameters: spec_path (str), hours (float)" in err
    assert not (tmp_path / "reports").exists()


def test_a_mistyped_runbook_parameter_fails_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "03_publish_fixes", "-p", "dry_run", "perhaps", "--check"]) == 2
    assert "parameter 'dry_run' of notebook 03_publish_fixes expects bool, got 'perhaps'" in capsys.readouterr().err
