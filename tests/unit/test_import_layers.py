"""The package's imports follow its layers and form no cycle (read from the source, lazy imports too).

Direction: entrypoints -> bootstrap_* -> service_layer -> adapters -> domain. observability/ may be
imported by all of those except the domain, and imports none of them; the domain imports only itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sumflow

PACKAGE = Path(sumflow.__file__).parent
RANK = {"domain": 0, "adapters": 1, "service_layer": 2, "bootstrap": 3, "entrypoints": 4}

# Imports that run back up a layer today, on the accumulator side (its refactor removes them).
KNOWN_UPWARD = {
    ("sumflow.bootstrap_accumulator", "sumflow.entrypoints.accumulator_app"),
    ("sumflow.bootstrap_accumulator", "sumflow.entrypoints.http_server"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every sumflow module and the sumflow modules it imports (`from a import b` counts a.b if b is a module)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name.startswith("sumflow."))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("sumflow."):
                module = node.module or ""
                submodules = {f"{module}.{alias.name}" for alias in node.names} & modules.keys()
                targets.update(submodules or {module})
        graph[name] = targets & modules.keys()
    return graph


def _layer(module: str) -> str | None:
    part = module.split(".")[1] if "." in module else ""
    if part.startswith("bootstrap_"):
        return "bootstrap"
    return part if part in RANK or part == "observability" else None


def _runs_up(layer: str, target_layer: str) -> bool:
    if layer == "observability":
        return True  # observability imports none of the layers
    if target_layer == "observability":
        return layer == "domain"
    return RANK[target_layer] > RANK[layer]


def test_no_import_runs_back_up_a_layer() -> None:
    wrong = {
        (module, target)
        for module, targets in _imports().items()
        for target in targets
        if (layer := _layer(module)) is not None
        and (target_layer := _layer(target)) is not None
        and target_layer != layer
        and _runs_up(layer, target_layer)
    }
    assert wrong - KNOWN_UPWARD == set()


def test_the_domain_imports_only_the_domain() -> None:
    outside = {
        (module, target)
        for module, targets in _imports().items()
        if _layer(module) == "domain"
        for target in targets
        if _layer(target) != "domain"
    }
    assert outside == set()


def test_no_import_cycle() -> None:
    graph = _imports()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []
