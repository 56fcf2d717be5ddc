"""A notebook's parameters read like a function signature, checked and coerced before anything runs."""

from __future__ import annotations

import ast
import datetime as dt
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recovery.config import PROJECT_ROOT
from recovery.errors import ConfigError
from recovery.notebook.secrets import refuse_secrets

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


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
