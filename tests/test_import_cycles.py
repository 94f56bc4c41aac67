"""No import cycle among the kit's modules, counting a package's `__init__` like any module: a model module that
imports `evaluator.biqa` while `evaluator.biqa` imports it back (even lazily, inside a builder) is a cycle, which
`tests/test_layout.py`'s check lets pass (it skips a package's edges to its own submodules)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("evaluator", "submission", "jury_app")


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every kit module `name` imports anywhere (top level or inside a function): `from P import m`, where m is a
    submodule, is an edge to P.m only; `from P import x` (not a module) an edge to P."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            targets = subs + ([base] if len(subs) < len(node.names) else [])
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph.get(name, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return cycles


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_the_cycle_search_sees_a_package_importing_its_submodule_back():
    """The check can fail: a package whose builder imports a submodule that imports the package is a cycle."""
    assert find_cycles({"p": {"p.m"}, "p.m": {"p"}}) == [["p", "p.m", "p"]]
    assert find_cycles({"p": {"p.m", "p.r"}, "p.m": {"p.r"}, "p.r": set()}) == []


def test_the_biqa_models_import_the_registry_not_the_package():
    for model in ("brisque", "niqe", "piqe", "koncept512"):
        assert "evaluator.biqa" not in GRAPH[f"evaluator.biqa.{model}"], model
        assert "evaluator.biqa.registry" in GRAPH[f"evaluator.biqa.{model}"], model


def test_no_import_cycle_among_kit_modules_packages_included():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
