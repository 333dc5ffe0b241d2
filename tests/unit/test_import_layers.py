"""The package's import graph: no cycles, and no import that runs back up a layer.

Layers, top to bottom (a module imports only from its own layer or the ones below):
    entrypoints  ->  bootstrap  ->  service_layer  ->  adapters  ->  domain
observability (logging, metrics, tracing, telemetry glue) may be imported by every layer but the
domain, and imports none of them (the domain's types are fine: they are what it reports on).
config (the SUMFLOW_* environment) is read by the bootstrap and the entrypoints only.
The same rules are an import-linter contract in app/pyproject.toml ([tool.importlinter]).

The graph is built from the source with `ast` (every import statement, also those inside functions:
a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "sumflow"
SOURCE = Path(__file__).resolve().parents[2] / "app" / "src" / PACKAGE

LAYERS = {"entrypoints": 4, "bootstrap": 3, "service_layer": 2, "adapters": 1, "domain": 0}
CONFIG_READERS = {"entrypoints", "bootstrap"}
OBSERVABILITY_MAY_IMPORT = {"domain", "observability", "package"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The package's modules that `name` imports (a `from x import y` names the submodule y if there is one)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]  # an attribute of a module, or a module outside
            if target and target != name and (target.startswith(f"{PACKAGE}.") or target == PACKAGE):
                yield target


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(name, path, known)) for name, path in found.items()}


def area(module: str) -> str:
    """The layer (or other part) a module belongs to."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    top = parts[1]
    return top


def violation(source: str, target: str) -> str | None:
    """Why the import source -> target breaks a rule, or None."""
    src, dst = area(source), area(target)
    if src == dst:
        return None
    if src in LAYERS and dst in LAYERS and LAYERS[dst] > LAYERS[src]:
        return f"{src} imports {dst}, a layer above it"
    if dst == "config" and src not in CONFIG_READERS:
        return f"{src} reads config (only the bootstrap and the entrypoints do)"
    if src == "observability" and dst not in OBSERVABILITY_MAY_IMPORT:
        return f"observability imports {dst}"
    if src == "domain" and dst != "domain":
        return f"the domain imports {dst} (it is pure)"
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert len(graph) > 30
    assert "sumflow.service_layer.ledger_consumer" in graph["sumflow.bootstrap.accumulator"]
    assert "sumflow.entrypoints.accumulator_server" in graph["sumflow.entrypoints.accumulator_main"]  # a lazy import
    assert {"sumflow.adapters.audit_log", "sumflow.domain.events"} <= graph["sumflow.adapters.accumulator_ports"]
    assert "sumflow.domain.events" in graph["sumflow.domain.ledger"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_import_runs_up_a_layer():
    broken = sorted(
        f"{source} -> {target}: {why}"
        for source, targets in import_graph().items()
        for target in targets
        if (why := violation(source, target)) is not None
    )
    assert broken == []


@pytest.mark.parametrize(
    ("source", "target", "broken"),
    [
        ("sumflow.bootstrap.accumulator", "sumflow.entrypoints.http_server", True),
        ("sumflow.service_layer.rebuild", "sumflow.bootstrap.accumulator", True),
        ("sumflow.adapters.audit_log", "sumflow.service_layer.ledger_consumer", True),
        ("sumflow.domain.ledger", "sumflow.adapters.audit_log", True),
        ("sumflow.domain.events", "sumflow.observability.metrics", True),
        ("sumflow.observability.metrics", "sumflow.adapters.ledger_store", True),
        ("sumflow.service_layer.rebuild", "sumflow.config", True),
        ("sumflow.entrypoints.accumulator_main", "sumflow.bootstrap.accumulator", False),
        ("sumflow.service_layer.ledger_consumer", "sumflow.observability.accumulator_telemetry", False),
        ("sumflow.observability.accumulator_telemetry", "sumflow.domain.ledger", False),
        ("sumflow.bootstrap.accumulator", "sumflow.config", False),
    ],
)
def test_the_rules(source, target, broken):
    assert (violation(source, target) is not None) == broken


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
