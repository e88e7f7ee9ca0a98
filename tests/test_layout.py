"""The package's shape: no import cycles, Hydra only in the entry points, scripts import only the package."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "seq2seq"
HYDRA_MODULES = {"compose", "train"}  # the entry point and the one place that composes configs


def imports(path: Path) -> set[str]:
    """Top-level names of the modules `path` imports (`seq2seq.data` -> `seq2seq.data`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def package_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {
        p.stem: {n.split(".")[1] for n in imports(p) if n.startswith("seq2seq.") and n.split(".")[1] in modules}
        - {p.stem}
        for p in PACKAGE.glob("*.py")
    }


def test_the_package_has_no_import_cycles():
    graph, done, cycles = package_graph(), set(), []

    def visit(module: str, path: list[str]) -> None:
        for dep in sorted(graph[module]):
            if dep in path:
                cycles.append(" -> ".join(path[path.index(dep) :] + [dep]))
            elif dep not in done:
                visit(dep, path + [dep])
        done.add(module)

    for module in sorted(graph):
        visit(module, [module])
    assert not cycles, cycles


def test_hydra_stays_in_the_entry_points():
    users = {p.stem for p in PACKAGE.glob("*.py") if any(n.split(".")[0] in ("hydra", "omegaconf") for n in imports(p))}
    assert users <= HYDRA_MODULES, users - HYDRA_MODULES


def test_scripts_import_the_package_never_each_other():
    scripts = {p.stem for p in (REPO / "scripts").glob("*.py")}
    for path in (REPO / "scripts").glob("*.py"):
        assert not {n.split(".")[0] for n in imports(path)} & (scripts - {path.stem}), path.name
