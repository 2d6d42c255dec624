"""The package's layers: imports point one way (down LAYERS) and form no cycle.

Every import counts, including those inside functions and under TYPE_CHECKING: a lazy import
still ties two modules together, and a cycle hidden in a function is a cycle all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpcbridge"

# Top to bottom: a module may import from its own layer's package or from any layer below it.
# ``hpcbridge`` itself (the lazy public API) stands above everything; errors, files and
# resources are leaves any layer may use.
LAYERS = (
    "cli",
    "workflows",
    "policy",
    "reports",
    "forecast",
    "ledger",
    "cluster",
    "executor",
    "backends",
    "transports",
    "site",
    "jobs",
    "files",
    "resources",
    "errors",
)
LEAVES = frozenset({"files", "resources", "errors"})


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """The hpcbridge modules ``name`` imports: ``from P import m`` names module P.m when it
    exists (a package's submodule), else P itself."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "hpcbridge"


def import_graph() -> nx.DiGraph[str]:
    graph: nx.DiGraph[str] = nx.DiGraph()
    for name, path in MODULES.items():
        graph.add_node(name)
        graph.add_edges_from((name, target) for target in imported_modules(name, path))
    return graph


def test_every_package_and_top_module_has_a_layer() -> None:
    unplaced = {layer_of(module) for module in MODULES} - {*LAYERS, "hpcbridge"}
    assert unplaced == set(), f"add {sorted(unplaced)} to LAYERS in {__file__}"


def test_imports_point_down_the_layers() -> None:
    rank = {layer: index for index, layer in enumerate(LAYERS)}
    upward = sorted(
        f"{source} -> {target}"
        for source, target in import_graph().edges
        if layer_of(source) != "hpcbridge"
        and layer_of(target) not in LEAVES
        and rank[layer_of(target)] < rank[layer_of(source)]
    )
    assert upward == []


def test_leaves_import_nothing_of_hpcbridge_but_errors() -> None:
    graph = import_graph()
    leaf_imports = sorted(
        f"{source} -> {target}"
        for source, target in graph.edges
        if layer_of(source) in LEAVES and target != "hpcbridge.errors"
    )
    assert leaf_imports == []


def test_no_import_cycle() -> None:
    cycles = [" -> ".join([*cycle, cycle[0]]) for cycle in nx.simple_cycles(import_graph())]
    assert cycles == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from hpcbridge.jobs import spec", "hpcbridge.jobs.spec"),
        ("from hpcbridge.jobs.spec import JobSpec", "hpcbridge.jobs.spec"),
        ("import hpcbridge.errors", "hpcbridge.errors"),
        ("from ..errors import SpecError", "hpcbridge.errors"),
    ],
)
def test_imports_are_resolved_to_modules(tmp_path: Path, source: str, expected: str) -> None:
    """The reader the checks above rely on: a test that checks nothing would pass them too."""
    module = tmp_path / "probe.py"
    module.write_text(source + "\n")
    assert imported_modules("hpcbridge.jobs.probe", module) == {expected}


def test_the_readme_names_every_module_where_it_lives() -> None:
    """README's "How it is built" is how a newcomer finds the room for a change: it must keep
    up with the tree (each package, and each module in it, by file name)."""
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme[readme.index("## How it is built") :]
    missing = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and f"`{path.name}`" not in section
    )
    packages = sorted(
        str(path.parent.relative_to(PACKAGE)) + "/"
        for path in PACKAGE.rglob("__init__.py")
        if path.parent != PACKAGE and f"{path.parent.name}/" not in section
    )
    assert missing == []
    assert packages == []
