"""The project's modules import one another one way: no cycle, counting imports inside functions and
under TYPE_CHECKING too, since either kind ties two modules' changes together just the same."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("forgetkit", "datasets_builders")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """The project modules `path` imports: `from a import b` counts `a.b` when that is a module, else `a`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return (found & known) - {module}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    known = set(paths)
    return {module: imports_of(path, module, known) for module, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_project_imports_itself_through_others() -> None:
    graph = import_graph()
    assert {"forgetkit.spec", "forgetkit.study", "datasets_builders"} <= set(graph)
    assert cycles(graph) == []


def test_the_cycle_finder_sees_lazy_and_type_only_imports() -> None:
    graph = import_graph()
    assert "forgetkit.spec" in graph["forgetkit.evals"], "steps imports Study under TYPE_CHECKING"
    assert "forgetkit.stages.vlmeval.model" in graph["forgetkit.stages.vlmeval.runner"], "imported inside a function"
    looped = {name: set(targets) for name, targets in graph.items()}
    looped["forgetkit.spec"].add("forgetkit.evals")
    assert any({"forgetkit.spec", "forgetkit.evals"} <= set(cycle) for cycle in cycles(looped))


def test_planning_a_study_imports_no_tool_nor_torch() -> None:
    """`launch --dry-run` and every Slurm job's start plan the whole study: the tools load only in a stage."""
    import subprocess
    import sys

    heavy = ("torch", "pandas", "llamafactory", "vlmeval", "transformers")
    code = f"import sys, forgetkit.study, forgetkit.slurm; print([m for m in {heavy!r} if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_library_code_never_imports_the_fixtures() -> None:
    """`forgetkit/fixtures/` draws the demo's and the tests' data; only the demo may use it."""
    graph = import_graph()
    users = {
        module
        for module, targets in graph.items()
        if any(target.startswith("forgetkit.fixtures") for target in targets)
        and not module.startswith("forgetkit.fixtures")
    }
    assert users == {"forgetkit.demo"}
