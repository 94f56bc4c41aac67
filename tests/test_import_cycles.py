"""No import cycle among the kit's modules, counting a package's `__init__` like any module: a model module that
imports `evaluator.biqa` while `evaluator.biqa` imports it back (even lazily, inside a builder) is a cycle, which
a check that skipped a package's edges to its own submodules would let pass."""

from __future__ import annotations

from import_graph import GRAPH


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
