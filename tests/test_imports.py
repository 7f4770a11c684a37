"""Every import in foveal points down the floors, and no module is in a circle with another.

The floors, top to bottom (README, "Layout"); a module may import its own floor or any floor below:
cli > serve > the package's __init__ and api > tasks > inspect > engine > models, data, metrics, losses, report
> registry > ops, files, config, errors. Imports inside functions count: a lazy import is still an arrow.
"""
import ast
from collections import defaultdict
from pathlib import Path

import pytest

FLOORS = [
    {"__main__", "cli"},
    {"serve"},
    {"foveal", "api"},
    {"tasks"},
    {"inspect"},
    {"engine"},
    {"models", "data", "metrics", "losses", "report", "track"},
    {"registry"},
    {"ops", "files", "config", "errors"},
]
FLOOR = {area: level for level, areas in enumerate(FLOORS) for area in areas}
# The registry imports the models package so that every model registers itself before a name is looked up:
# the one arrow that points up, on purpose.
ALLOWED_UP = {("registry", "models")}


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package folder `root`."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported(module: str, path: Path, node: ast.Import | ast.ImportFrom, names: dict) -> list[str]:
    """The package modules one import statement reaches (the module itself when `from m import name` names no
    submodule)."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = package[: len(package) - node.level + 1] if node.level else []
        stem = ".".join(base + ([node.module] if node.module else []))
        targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in names else stem for alias in node.names]
    found = []
    for target in targets:
        while target and target not in names:  # `import foveal.x.y` where y is a name in x
            target = target.rpartition(".")[0]
        if target and target != module:
            found.append(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports, anywhere in its file."""
    names = module_names(root)
    graph = defaultdict(set)
    for module, path in names.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(imported(module, path, node, names))
    return graph


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for source, targets in graph.items():
        for target in targets:
            pair = (area(source), area(target))
            if pair[0] not in FLOOR or pair[1] not in FLOOR:
                wrong.append(f"{source} -> {target}: a package area with no floor (add it to FLOORS and README)")
            elif FLOOR[pair[1]] < FLOOR[pair[0]] and pair not in ALLOWED_UP:
                wrong.append(f"{source} -> {target}: {pair[0]} may not import {pair[1]}, a floor above it")
    return sorted(wrong)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of two or more modules that reach each other (Tarjan's strongly connected components),
    leaving out the registry's allowed arrow."""
    edges = {m: {t for t in ts if (area(m), area(t)) not in ALLOWED_UP} for m, ts in graph.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def area_circles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Two areas on one floor that import each other (models <-> data, say), each a circle of its own."""
    arrows = {(area(s), area(t)) for s, ts in graph.items() for t in ts if area(s) != area(t)}
    return sorted((a, b) for a, b in arrows if a < b and (b, a) in arrows and not {(a, b), (b, a)} & ALLOWED_UP)


def task_package(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 3 and parts[1] == "tasks" else None


PACKAGE = Path(__file__).resolve().parents[1] / "foveal"


@pytest.fixture(scope="module")
def graph():
    return import_graph(PACKAGE)


def test_every_import_points_down(graph):
    assert upward_arrows(graph) == []


def test_no_module_is_in_a_circle(graph):
    assert circles(graph) == []
    assert area_circles(graph) == []


def test_tasks_import_the_contract_never_each_other(graph):
    crossing = [f"{s} -> {t}" for s, ts in graph.items() for t in ts
                if task_package(s) and task_package(t) and task_package(s) != task_package(t)]
    assert crossing == []
    assert len({task_package(m) for m in graph if task_package(m)}) >= 5  # each task is a package


def test_the_walk_sees_what_it_must_refuse(tmp_path):
    """An upward arrow, a lazy import inside a function and a circle, in a made-up package, are all found."""
    package = tmp_path / "foveal"
    for folder in ("ops", "engine", "tasks/detect", "tasks/segment"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "ops" / "boxes.py").write_text("def f():\n    from ..engine import trainer\n")
    (package / "engine" / "trainer.py").write_text("from ..ops.boxes import f\n")
    (package / "tasks" / "detect" / "task.py").write_text("from ..segment import task\n")
    (package / "tasks" / "segment" / "task.py").write_text("import foveal.engine.trainer\n")
    made_up = import_graph(package)
    assert upward_arrows(made_up) == ["foveal.ops.boxes -> foveal.engine.trainer: ops may not import engine, "
                                      "a floor above it"]
    assert circles(made_up) == [["foveal.engine.trainer", "foveal.ops.boxes"]]
    assert made_up["foveal.tasks.detect.task"] == {"foveal.tasks.segment.task"}
    assert made_up["foveal.tasks.segment.task"] == {"foveal.engine.trainer"}
