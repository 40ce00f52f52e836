"""The layer rule, enforced: a module imports only from its own layer or the layers below it.

Top to bottom: front doors (CLI, pytest plugin, console, the accelbench package) → tracking/ and reporting/
(reporting may draw what tracking computes, never the reverse) → the engine (the rest of harness/) → scenario/ →
results/ → backends/ and model_zoo/ → sysinfo/. Function-local imports count too: hiding a tie inside a function
does not undo it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FRONT_DOORS = {"harness.cli", "harness.pytest_plugin", "harness.console", "harness.overhead"}
FRONT_PACKAGE = "accelbench"  # the Python API and the pytest fixture: a front door of its own
# rank: lower imports nothing of higher; the same rank imports freely within a package
RANK = {"front": 0, "tracking": 1, "reporting": 1, "harness": 2, "scenario": 3, "results": 4, "backends": 5,
        "model_zoo": 5, "sysinfo": 6}
# same-rank pairs allowed in one direction only (importer, imported)
SIDEWAYS = {("reporting", "tracking"), ("backends", "model_zoo")}


def layer_of(module: str) -> str | None:
    if module in FRONT_DOORS or module.split(".")[0] == FRONT_PACKAGE:
        return "front"
    top = module.split(".")[0]
    return top if top in RANK else None


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                parts = module.split(".")
                # a package's __init__ is the package itself: one level less to climb
                package = parts[: len(parts) - node.level + (path.name == "__init__.py")]
                base = ".".join([*package, *([base] if base else [])])
            found += [(node.lineno, base)] if base else []
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names
                      if f"{base}.{alias.name}" in FRONT_DOORS or not node.module]
    return found


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in (*RANK, FRONT_PACKAGE):
        if package == "front":
            continue
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


def violations() -> list[str]:
    problems = []
    for module, path in modules():
        mine = layer_of(module)
        for line, target in imports_of(path, module):
            theirs = layer_of(target)
            if theirs is None or theirs == mine or mine is None:
                continue
            if RANK[theirs] < RANK[mine] or (RANK[theirs] == RANK[mine] and (mine, theirs) not in SIDEWAYS):
                problems.append(f"{path.relative_to(REPO)}:{line}: {module} ({mine}) imports {target} ({theirs})")
    return problems


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule can fail: an upward import written into a file is reported with its line."""
    path = tmp_path / "probe.py"
    path.write_text("import os\n\ndef f():\n    from harness.engine import Engine\n    from ..harness import cli\n")
    assert imports_of(path, "sysinfo.probe") == [(1, "os"), (4, "harness.engine"), (5, "harness"), (5, "harness.cli")]
    mine, theirs = layer_of("sysinfo.probe"), layer_of("harness.engine")
    assert mine == "sysinfo" and theirs == "harness" and RANK[theirs] < RANK[mine]


@pytest.mark.parametrize("module", sorted(FRONT_DOORS))
def test_every_front_door_exists(module: str) -> None:
    assert (REPO / (module.replace(".", "/") + ".py")).is_file()
