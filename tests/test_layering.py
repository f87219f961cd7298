"""The floors of the code base, checked by reading every import statement (top level and inside functions).

1. ``hybrid_rl``: shared machinery, names no env and no algorithm;
2. ``envs``: environments and their registry;
3. ``algorithms``: one module per algorithm, family cores in ``_``-prefixed modules;
4. ``experiments.catalog`` (name lookups, problems, budgets) and ``experiments.smoke``;
5. ``experiments.dataset_builder``: dataset generation, which trains or scripts policies;
6. entry points: the rest of ``experiments``, ``paper_figures``, ``benchmarks``.

A module may import only from its own floor or lower ones, the graph has no circle, and no algorithm imports
another algorithm (only family cores, ``algorithms._*``).
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("hybrid_rl", "envs", "algorithms", "experiments", "paper_figures", "benchmarks")


def floor(module: str) -> int:
    if module.startswith("hybrid_rl"):
        return 1
    if module.startswith("envs"):
        return 2
    if module.startswith("algorithms"):
        return 3
    if module in ("experiments.catalog", "experiments.smoke"):
        return 4
    if module == "experiments.dataset_builder":
        return 5
    return 6


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(path: pathlib.Path, modules: set[str]) -> set[str]:
    """Project modules imported anywhere in ``path`` (``from a import b`` counts ``a.b`` when it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, set(modules)) for name, path in modules.items()}


def test_no_import_goes_up_a_floor():
    bad = [f"{m} (floor {floor(m)}) imports {d} (floor {floor(d)})"
           for m, deps in graph().items() for d in deps if floor(d) > floor(m)]
    assert not bad, "\n".join(sorted(bad))


def test_hybrid_rl_names_no_env_and_no_algorithm():
    bad = [f"{m} imports {d}" for m, deps in graph().items() if m.startswith("hybrid_rl")
           for d in deps if not d.startswith("hybrid_rl")]
    assert not bad, "\n".join(sorted(bad))


def test_no_algorithm_imports_another_algorithm():
    def is_algorithm(m):
        return m.startswith("algorithms.") and not m.split(".")[1].startswith("_")

    bad = [f"{m} imports {d}" for m, deps in graph().items() if is_algorithm(m) for d in deps
           if is_algorithm(d) and d != m]
    assert not bad, "\n".join(sorted(bad))


def test_the_import_graph_has_no_circle():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if d not in g:
                continue
            if d == m:  # a script importing its own module by name (experiments.run) is no circle
                continue
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
