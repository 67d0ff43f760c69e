"""The package's dependencies run one way, checked by import-linter against the contracts in pyproject.toml
([tool.importlinter]): layers top to bottom (cli -> bench / engine / predict / serve -> results -> backends ->
training -> spec -> data), the console below what it shows, leaves that import nothing of lenet_bench, and no
package that imports one that imports it back. Every import counts, lazy ones inside functions too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    command = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(command), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_package_keeps_its_import_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _status(result: subprocess.CompletedProcess) -> dict[str, str]:
    """Each contract's name -> KEPT or BROKEN, from lint-imports' report."""
    return {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in result.stdout.splitlines()
            if line.endswith((" KEPT", " BROKEN"))}


def test_the_contracts_see_a_cycle_and_a_layer_importing_upwards(tmp_path):
    """The check can fail: a copy of the package where training imports the console (which imports training),
    then also data the cli, lazily."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "lenet_bench", copy / "lenet_bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    (copy / "lenet_bench" / "training" / "cycle.py").write_text("from lenet_bench import console\n")
    status = _status(lint_imports(copy))
    assert status["No package imports one that imports it back"] == "BROKEN", status
    assert status["Layers, top to bottom: a layer never imports the ones above it"] == "KEPT", status

    (copy / "lenet_bench" / "data" / "upwards.py").write_text("def f():\n    from lenet_bench.cli import common\n")
    result = lint_imports(copy)
    assert _status(result)["Layers, top to bottom: a layer never imports the ones above it"] == "BROKEN"
    assert "lenet_bench.data.upwards -> lenet_bench.cli.common" in result.stdout
