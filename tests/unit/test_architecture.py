"""The dependency rule of docs/architecture.md: subpackages import only the layers below them, and no module
takes part in an import cycle. Imports inside functions count as much as those at the top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "recovery"
BASE = "base"  # the modules directly in recovery/: errors, config, spec, frames, timerange, source

# what each subpackage may import (besides itself); docs/architecture.md draws the same picture
ALLOWED: dict[str, set[str]] = {
    BASE: set(),
    "metrics": {BASE},
    "records": {BASE, "metrics"},
    "kafka": {BASE},
    "replay": {BASE, "records", "kafka"},
    "fixes": {BASE, "records", "kafka"},
    "spark": {BASE},
    "pipeline": {BASE, "metrics", "records", "kafka", "replay", "fixes", "spark"},
    "live": {BASE, "metrics", "records", "kafka"},
    "sim": {BASE, "records", "kafka", "live"},
    "notebook": {BASE, "metrics", "records", "kafka", "replay", "fixes", "spark", "pipeline", "live", "sim"},
    "cli": {BASE, "metrics", "records", "kafka", "replay", "fixes", "spark", "pipeline", "live", "sim", "notebook"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every ``recovery`` module ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "recovery":
                found.update(f"recovery.{alias.name}" for alias in node.names)
            elif node.module.startswith("recovery."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name == "recovery" or a.name.startswith("recovery."))
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports(path):
            # "from recovery.pkg import module" names a module; otherwise the imported module itself
            targets.add(imported if imported in modules else imported.rsplit(".", 1)[0])
        edges[name] = {t for t in targets if t in modules and t != name}
    return edges


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) <= 2 and not (PACKAGE / parts[-1]).is_dir():
        return BASE
    return parts[1]


def test_every_subpackage_is_in_the_rule() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED) - {BASE}


def test_subpackages_import_only_the_layers_below() -> None:
    wrong = []
    for module, targets in graph().items():
        if module in ("recovery", "recovery.__main__"):
            continue
        for target in targets:
            if target == "recovery":  # the version only
                continue
            here, there = layer(module), layer(target)
            if here != there and there not in ALLOWED[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there})")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(sorted(wrong))


def cycles_in(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk of ``edges`` meets (each as the path that closes it)."""
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycles() -> None:
    cycles = cycles_in(graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle_through_a_function_local_import() -> None:
    # the shape of the replay <-> replay_group cycle this rule was written after
    edges = {"replay": {"plan", "group"}, "group": {"plan", "replay"}, "plan": set()}
    assert cycles_in(edges) == [["group", "replay", "group"]]  # the walk starts at the first name
    assert cycles_in({"a": {"b"}, "b": set()}) == []


def test_the_rule_catches_an_import_from_above(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from recovery.pipeline.recover import recover\n")
    assert imports(source) == {"recovery.pipeline.recover"}
    assert "pipeline" not in ALLOWED["replay"]
