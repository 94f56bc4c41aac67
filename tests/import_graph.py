"""The kit's modules and the import graph between them, read from the sources with `ast` (nothing is imported):
one edge per kit module a module imports anywhere (top level, functions, TYPE_CHECKING blocks)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("evaluator", "submission", "jury_app")


def module_name(path: Path) -> str:
    """`evaluator/biqa/__init__.py` -> `evaluator.biqa`; `benchmarks/campaign.py` -> `benchmarks.campaign`."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def kit_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


MODULES = kit_modules()


def imports_of(name: str, path: Path) -> set[str]:
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


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}
