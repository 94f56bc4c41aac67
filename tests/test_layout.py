"""The kit's layout rules, checked on the source: every module imports (cycles: `test_import_cycles.py`), the
evaluator imports nothing from the attacks (`submission`) or the jury app (`jury_app`), and every file name of a
contract is a string literal in exactly one module (the contract's)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from import_graph import GRAPH, MODULES, REPO, module_name

SKIP_IMPORT = {"jury_app.app"}  # a Streamlit script: importing it runs the app


@pytest.mark.parametrize("name", sorted(set(MODULES) - SKIP_IMPORT))
def test_every_module_imports(name):
    importlib.import_module(name)


# import cycles (packages included): tests/test_import_cycles.py


def test_the_evaluator_imports_neither_the_attacks_nor_the_jury_app():
    bad = sorted(f"{name} imports {target}" for name, targets in GRAPH.items() if name.startswith("evaluator")
                 for target in targets if target.split(".")[0] in ("submission", "jury_app"))
    assert not bad, bad


#: each file of a contract and the one module that may name it as a string literal
CONTRACT_FILES = {
    "run.json": "evaluator.contracts.run_folder",
    "runs.csv": "evaluator.contracts.results",
    "scores.csv": "evaluator.contracts.results",
    "selection.csv": "evaluator.contracts.results",
    "task.json": "evaluator.contracts.results",
    "report.html": "evaluator.contracts.results",
    "matrix.csv": "evaluator.contracts.results",
    "manifest.json": "evaluator.contracts.jury_package",
    "key.json": "evaluator.contracts.jury_package",
    "votes.sqlite": "evaluator.contracts.jury_package",
    "ranking.csv": "evaluator.contracts.jury_package",
    ".serve.lock": "evaluator.contracts.jury_package",
    "log.csv": "submission.run_folder",  # pp-attack's own log, read back by the benchmarks
}
#: each folder of a contract, its module, and which uses of the word count. A folder name is also an ordinary
#: word ("images" is a manifest key, "jury" a task.toml section), so only its uses as a path count: "path", a
#: literal with it as a path part ("jury/key.json") or an operand of `/` (`out / "jury"`); "prefix", a path
#: inside the jury package ("images/x.jpg", f"originals/{id}.png"): `out / "originals"` is the task's originals
#: folder, another folder of the same name. Its definition as a constant (`IMAGES_DIR = "images"`) counts too.
#: A literal with white space is a sentence (a message), not a path.
CONTRACT_DIRS = {
    "images": ("evaluator.contracts.jury_package", "prefix"),
    "originals": ("evaluator.contracts.jury_package", "prefix"),
    "jury": ("evaluator.contracts.results", "path"),
    ".pp-attack": ("submission.run_folder", "path"),
}
#: what is scanned: the kit and the benchmarks (which read the CLIs' outputs, so must name them the same way)
SCANNED = {**MODULES, **{module_name(p): p for p in sorted((REPO / "benchmarks").rglob("*.py"))}}


def literal_names(path: Path) -> set[str]:
    """The contract file names that occur in `path` as a string literal (a docstring is prose, not a literal):
    the whole literal, a glob of it (`votes.sqlite*`) or a path ending in it (`jury/key.json`); and the contract
    folder names used as a path (`CONTRACT_DIRS`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    constants = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)}
    divided = {id(side) for node in ast.walk(tree) if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
               for side in (node.left, node.right)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value.rstrip("*")
            found.update(n for n in CONTRACT_FILES if text == n or text.endswith("/" + n))
            parts = text.split("/")
            for d, (_, rule) in CONTRACT_DIRS.items():
                if any(c.isspace() for c in text):  # a sentence ("see results/jury"), not a path
                    continue
                if (text.startswith(d + "/") if rule == "prefix"
                        else (len(parts) > 1 and d in parts) or (text == d and id(node) in divided)) \
                        or (text == d and id(node) in constants):  # its definition, `JURY_DIR = "jury"`
                    found.add(d)
    return found


def test_each_contract_file_name_is_a_literal_in_its_contract_module_only():
    names = {**CONTRACT_FILES, **{d: module for d, (module, _) in CONTRACT_DIRS.items()}}
    where: dict[str, list[str]] = {name: [] for name in names}
    for module, path in SCANNED.items():
        for name in literal_names(path):
            where[name].append(module)
    assert where == {name: [module] for name, module in names.items()}


def test_the_literal_check_sees_literals_and_skips_docstrings(tmp_path):
    source = tmp_path / "m.py"
    source.write_text('"""writes run.json and jury/"""\nA = "runs.csv"\nB = f"{A}/key.json"\nC = "votes.sqlite*"\n'
                      'def f():\n    """ranking.csv"""\n    return "see task.json"\n'
                      'D = {"images": 1, "originals": 2}.get("jury")\nE = out / "jury"\nF = f"originals/{x}.png"\n'
                      'G = root / ".pp-attack" / "run" / "log.csv"\nIMAGES_DIR = "images"\nH = work / "originals" / "images"\n',
                      encoding="utf-8")
    assert literal_names(source) == {"runs.csv", "key.json", "votes.sqlite", "jury", "originals", ".pp-attack",
                                     "log.csv", "images"}
    source.write_text('I = "data/originals/images"\nJ = "serve results/jury, or images/ of it"\n', encoding="utf-8")
    assert literal_names(source) == set()


# every runtime dependency imported: tests/test_dependencies.py


def test_the_project_cites_only_its_own_design_document():
    """Code, docs and benchmarks cite `docs/design.md`, which exists; nothing points outside the repository (no
    path into the shared folder the project was built from: it is not part of the repository)."""
    import re
    import subprocess

    assert (REPO / "docs/design.md").is_file()
    files = subprocess.run(["git", "ls-files", "*.py", "*.md", "Makefile", "*.toml"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    bad = []
    for name in files:
        text = (REPO / name).read_text(encoding="utf-8")
        for m in re.finditer(r"[\w./-]*design\.md|\bshared/[\w./-]*", text):
            if m.group(0) != "docs/design.md":
                bad.append(f"{name}: {m.group(0)}")
    assert not bad, bad
