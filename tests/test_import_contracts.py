"""The house's import direction (doors -> domains -> platform) and the absence of import circles.
`make test` runs `lint-imports` itself; these tests show that each contract can fail, by adding a
deliberate bad import to a copy of the tree, and check the real tree for circles with grimp
(the graph library import-linter is built on)."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("commands", "portal", "api", "jobs", "core")  # app.py is a module: see factory_importers
LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")
CYCLES = os.path.join(ROOT, "tests", "import_cycles.py")


def factory_importers(root) -> list[str]:
    """Modules of the packages under `root` that import app.py (the composition root, which imports
    every door), at any depth of the module, functions included. import-linter analyses packages
    only, so this is the check that keeps the factory out of reach of the doors and core."""
    found = []
    for package in PACKAGES:
        for folder, _dirs, files in os.walk(os.path.join(root, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as fh:
                    tree = ast.parse(fh.read(), path)
                for node in ast.walk(tree):
                    names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                             else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                    if any(n == "app" or n.startswith("app.") for n in names):
                        found.append(os.path.relpath(path, root))
    return sorted(set(found))


def import_cycles(root) -> list[list[str]]:
    """Every import circle in the project's packages under `root`, found in a fresh interpreter
    (this one has already imported the real tree, which grimp would find first)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, CYCLES, *PACKAGES], cwd=root, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.fixture()
def tree_copy(tmp_path):
    """The project's packages and .importlinter, copied so a test can break them."""
    for name in PACKAGES:
        shutil.copytree(os.path.join(ROOT, name), tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "templates"))
    shutil.copy(os.path.join(ROOT, ".importlinter"), tmp_path / ".importlinter")
    shutil.copy(os.path.join(ROOT, "app.py"), tmp_path / "app.py")
    return tmp_path


def lint(root) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def add_import(root, module_path: str, line: str) -> None:
    with open(os.path.join(root, module_path), "a") as fh:
        fh.write(f"\n{line}  # deliberate bad import for the contract test\n")


def test_the_tree_keeps_every_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 4 kept, 0 broken." in result.stdout


def test_the_tree_has_no_import_circle():
    assert import_cycles(ROOT) == []


@pytest.mark.parametrize(("module_path", "line", "contract"), [
    ("core/platform/db.py", "from core.points import ledger", "Doors -> domains -> platform, one way"),
    ("core/evidence/images.py", "import core.points.rules", "Doors -> domains -> platform, one way"),
    ("core/delivery/sinks.py", "import api.errors", "Nothing in core imports a door"),
    ("api/stats.py", "import minio", "Only core.storage.minio imports the minio SDK"),
    ("core/review/approvals.py", "import jinja2", "Rules render nothing"),
])
def test_a_bad_import_breaks_its_contract(tree_copy, module_path, line, contract):
    add_import(tree_copy, module_path, line)
    result = lint(tree_copy)
    assert result.returncode != 0
    broken = result.stdout[result.stdout.index("Broken contracts"):]
    assert contract in broken


def test_nothing_imports_the_app_factory():
    assert factory_importers(ROOT) == []


def test_an_import_of_the_factory_is_found(tree_copy):
    # The circle issue 11 quoted: jobs/context.py built its own app (jobs -> app -> commands -> jobs).
    with open(tree_copy / "jobs" / "context.py", "a") as fh:
        fh.write("\n\ndef _build():\n    from app import create_app  # deliberate bad import\n    return create_app()\n")
    assert factory_importers(tree_copy) == [os.path.join("jobs", "context.py")]


def test_a_circle_is_found(tree_copy):
    # platform.logs -> platform.audit -> platform.logs is a circle inside one layer, which the layer
    # contracts allow; the cycle check is what catches it.
    add_import(tree_copy, "core/platform/logs.py", "import core.platform.audit")
    cycles = import_cycles(str(tree_copy))
    assert ["core.platform.audit", "core.platform.logs"] in cycles
