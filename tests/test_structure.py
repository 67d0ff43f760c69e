"""The package's dependencies run one way: no package imports one that imports it back.

Every `import lenet_bench...` counts, at module level or inside a function (a lazy import is still a
dependency). The intended direction, top to bottom:
cli -> bench / engine / predict / serve -> results -> backends -> training -> spec -> data,
with console, device, stopping and backend_registry as leaves anyone may use.
"""

from __future__ import annotations

import ast
import graphlib
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lenet_bench"
LEAVES = ("atomic_file", "backend_registry", "device", "stopping", "reference_folder")  # import nothing of lenet_bench
FORBIDDEN = {  # package -> packages it must never import (the layers above it)
    "data": {"spec", "training", "backends", "engine", "results", "cli"},
    "spec": {"training", "backends", "engine", "results", "cli"},
    "training": {"backends", "engine", "results", "cli"},
    "backends": {"engine", "results", "cli"},
    "results": {"engine", "cli", "bench", "serve", "predict"},
    "console": {"engine", "results", "cli"},
}


def unit_of(module: str) -> str:
    """The package (or top-level module) a dotted lenet_bench module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "lenet_bench"


def imports() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the files that import it."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
        source = unit_of(module)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "lenet_bench":
                    targets = [f"lenet_bench.{alias.name}" for alias in node.names]
                elif node.module.startswith("lenet_bench."):
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("lenet_bench.")]
            for target in targets:
                unit = unit_of(target)
                if unit not in (source, "lenet_bench", "__version__"):
                    found[source][unit].append(str(path.relative_to(PACKAGE.parent)))
    return found


def test_no_package_imports_one_that_imports_it_back():
    graph = {source: set(targets) for source, targets in imports().items()}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as cycle:
        raise AssertionError(f"an import cycle between packages: {' -> '.join(cycle.args[1])}") from None


def test_no_layer_imports_the_layers_above_it():
    found = imports()
    wrong = {f"{source} -> {target}": files for source, banned in FORBIDDEN.items()
             for target, files in found.get(source, {}).items() if target in banned}
    assert not wrong, wrong


def test_the_leaves_import_nothing_of_lenet_bench():
    found = imports()
    assert {leaf: dict(found[leaf]) for leaf in LEAVES if found.get(leaf)} == {}


def test_the_check_sees_a_cycle_when_there_is_one(tmp_path, monkeypatch):
    """The test above can fail: a package that imports back is found."""
    fake = tmp_path / "lenet_bench"
    (fake / "data").mkdir(parents=True)
    (fake / "spec").mkdir()
    (fake / "data" / "a.py").write_text("from lenet_bench.spec import b\n")
    (fake / "spec" / "b.py").write_text("def f():\n    from lenet_bench.data import a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert imports()["data"]["spec"] and imports()["spec"]["data"]
