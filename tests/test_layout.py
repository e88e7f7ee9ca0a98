"""The package's shape: subpackages by concern, thin commands on top, no import cycles, a shallow import
graph, Hydra only in the entry points, and scripts (scripts/, benchmarks/) that import only the package (and, in
benchmarks/, the harnesses' shared `common`).

Imports under `if TYPE_CHECKING:` are for annotations only (they never run) and do not count.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "seq2seq"
COMMANDS = {"train", "translate", "evaluate", "score", "serve", "report", "shortlist", "export", "portable.__main__"}
SUBPACKAGES = {"data", "model", "training", "decoding", "serving", "portable"}
HYDRA_MODULES = {"seq2seq.compose", "seq2seq.train"}  # the entry point and the one place that composes configs
MAX_CHAIN = 9  # modules in the longest chain of imports (A imports B imports C ...)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Dotted names `path` imports at run time (`from seq2seq.data import corpus` gives `seq2seq.data` and
    `seq2seq.data.corpus`), leaving out those under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def package_graph() -> dict[str, set[str]]:
    """Each module of seq2seq/ (every subfolder) -> the modules of seq2seq/ it imports at run time."""
    return {name: {n for n in imports(path) if n in MODULES} - {name} for name, path in MODULES.items()}


def is_command(path: Path) -> bool:
    """A module with `main()` and an `if __name__ == "__main__":` block: something a user runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    has_main = any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
    guarded = any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)
    return has_main and guarded


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    chains: dict[str, list[str]] = {}

    def chain(module: str) -> list[str]:
        if module not in chains:
            chains[module] = [module]  # a cycle would stop here (test_no_import_cycles reports it)
            below = [chain(dep) for dep in sorted(graph[module])]
            chains[module] = [module, *max(below, key=len, default=[])]
        return chains[module]

    return max((chain(m) for m in sorted(graph)), key=len)


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_the_walk_sees_every_subpackage():
    assert {name.split(".")[1] for name in MODULES if name.count(".") >= 2} == SUBPACKAGES
    assert "seq2seq.model.decoder" in MODULES and "seq2seq.serving.app" in MODULES


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


def test_the_commands_are_the_top_level_modules_users_run():
    commands = {name for name, path in MODULES.items() if is_command(path)}
    assert commands == {f"seq2seq.{c}" for c in COMMANDS}


def test_no_module_imports_a_command():
    commands = {f"seq2seq.{c}" for c in COMMANDS}
    offenders = {name: sorted(deps & commands) for name, deps in package_graph().items() if deps & commands}
    assert not offenders, offenders


def test_the_longest_import_chain_is_short():
    chain = longest_chain(package_graph())
    assert len(chain) <= MAX_CHAIN, " -> ".join(chain)


def test_decoding_never_reaches_the_corpus_readers():
    """Loading a checkpoint and searching need the tokenizer, never the code that reads corpora."""
    graph = package_graph()
    for name in (n for n in graph if n.startswith(("seq2seq.decoding.", "seq2seq.model."))):
        readers = {"seq2seq.data.corpus", "seq2seq.data.local_files", "seq2seq.data.hub"}
        assert not readers & reaches(graph, name), name


def test_the_model_is_below_training_and_decoding():
    graph = package_graph()
    for name in (n for n in graph if n.startswith("seq2seq.model.")):
        assert not {d for d in reaches(graph, name) if d.startswith(("seq2seq.training", "seq2seq.decoding"))}, name


def test_the_portable_translator_imports_no_torch():
    """seq2seq.portable, and every module of the package it reaches, import nothing but numpy, onnxruntime,
    sentencepiece and the standard library: it runs where only those are installed."""
    allowed = {"numpy", "onnxruntime", "sentencepiece", "seq2seq", *sys.stdlib_module_names}
    graph = package_graph()
    portable = {name for name in MODULES if name.startswith("seq2seq.portable")}
    reached = portable | {dep for name in portable for dep in reaches(graph, name)}
    outside = {name: sorted(i for i in imports(MODULES[name]) if i.split(".")[0] not in allowed) for name in reached}
    assert not any(outside.values()), {name: found for name, found in outside.items() if found}


def test_hydra_stays_in_the_entry_points():
    users = {n for n, p in MODULES.items() if any(i.split(".")[0] in ("hydra", "omegaconf") for i in imports(p))}
    assert users <= HYDRA_MODULES, users - HYDRA_MODULES


def test_scripts_import_the_package_never_each_other():
    """scripts/ and benchmarks/ import the package, never one another; the harnesses of benchmarks/ also import
    `common`, the helpers they share, found beside them (Python puts a script's own folder first on sys.path, so
    no script edits sys.path)."""
    paths = sorted((REPO / "scripts").glob("*.py")) + sorted((REPO / "benchmarks").glob("*.py"))
    scripts = {p.stem for p in paths}
    assert {"config_reference", "benchmark", "joeynmt_peer", "common"} <= scripts and len(scripts) == len(paths)
    for path in paths:
        shared = {"common"} if path.parent.name == "benchmarks" else set()
        name = path.relative_to(REPO).as_posix()
        assert not {n.split(".")[0] for n in imports(path)} & (scripts - {path.stem} - shared), name
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edits = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and ast.unparse(n) == "sys.path"]
        assert not edits, f"{name} touches sys.path"
