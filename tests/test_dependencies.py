"""Every runtime dependency of pyproject.toml is used by the kit, checked on the parsed source: some module of
evaluator/, submission/ or jury_app/ has an import statement of one of the distribution's import names (read from
the installed metadata, `importlib.metadata.packages_distributions()`, so no hand-kept name table), or locates a
data-only package with `importlib.util.find_spec("name")` (brisque's SVR model, scikit-video's NIQE parameters).
A mention in a string or a comment does not count."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("evaluator", "submission", "jury_app")


def _normal(dist: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def used_top_level_names(sources: list[str]) -> set[str]:
    """Top-level module names the sources import (`import a.b`, `from a.b import c`; not relative imports), or
    locate with `find_spec`: its literal argument, or, in a module that calls `find_spec(variable)`, a string
    literal of that module that is exactly a module name (demo_data's table of packages holding photos)."""
    used: set[str] = set()
    for source in sources:
        tree = ast.parse(source)
        literals: set[str] = set()
        calls_find_spec = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                used.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                used.add(node.module.split(".")[0])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                literals.add(node.value)
            elif isinstance(node, ast.Call) and node.args:
                func = node.func
                if (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")) == "find_spec":
                    arg = node.args[0]
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        used.add(arg.value.split(".")[0])
                    else:
                        calls_find_spec = True
        if calls_find_spec:
            used.update(literals)
    return used


def import_names() -> dict[str, set[str]]:
    """Distribution (normalized) -> the top-level import names it installs."""
    names: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            names.setdefault(_normal(dist), set()).add(module)
    return names


DEPENDENCIES = [re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0].strip() for dep in tomllib.loads(
    (REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]]
USED = used_top_level_names([p.read_text(encoding="utf-8") for pkg in PACKAGES for p in sorted((REPO / pkg).rglob(
    "*.py"))])


@pytest.mark.parametrize("dist", DEPENDENCIES)
def test_every_runtime_dependency_is_imported_by_the_kit(dist):
    provided = import_names().get(_normal(dist))
    assert provided, f"{dist}: not installed in this environment (pip install -e .)"
    assert provided & USED, f"{dist} (import names {sorted(provided)}): no kit module imports it; drop it from " \
                            "pyproject.toml or import it"


def test_the_check_ignores_mentions_in_strings_and_comments_and_relative_imports():
    sources = ['x = "scipy"\n# import numpy\n', "from . import torch\n", "import pandas.io\n",
               "from importlib.util import find_spec\nfind_spec('skvideo')\n"]
    assert used_top_level_names(sources) == {"pandas", "importlib", "skvideo"}
    table = "import importlib.util\nPHOTOS = (('sklearn', 'a/b.jpg'),)\nimportlib.util.find_spec(PHOTOS[0][0])\n"
    assert used_top_level_names([table]) == {"importlib", "sklearn"}
