"""Shared fixtures: tiny settings that make any experiment train in seconds on the embedded corpus."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
BENCHMARKS = REPO / "benchmarks"
SCRIPT_FOLDERS = (REPO / "scripts", BENCHMARKS, REPO / "data" / "synth_de_en")  # none of them a package


def load_script(name: str) -> ModuleType:
    """NAME.py of scripts/, benchmarks/ or data/synth_de_en/ (make_corpus) as a module, registered in sys.modules
    (dataclasses look their module up there). A harness of benchmarks/ imports `common` beside it, as Python finds
    it when the harness runs as a script (its own folder first on sys.path): benchmarks/ goes on sys.path for it."""
    module_name = f"seq2seq_scripts_{name}"
    if module_name not in sys.modules:
        (path,) = [folder / f"{name}.py" for folder in SCRIPT_FOLDERS if (folder / f"{name}.py").is_file()]
        if path.parent == BENCHMARKS and str(BENCHMARKS) not in sys.path:
            sys.path.append(str(BENCHMARKS))
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


# ----------------------------------------------------------------------------- the harnesses' tests (marker bench)


BENCH_LEFT_OUT = pytest.StashKey[int]()  # how many tests of the harnesses a run left out


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench", action="store_true", help="also run the tests marked bench (benchmarks/ harnesses)")


def wants_bench(config: pytest.Config) -> bool:
    """--bench, or an -m expression that names the marker (`-m bench`, `-m "bench and not slow"`)."""
    return config.getoption("--bench") or bool(re.search(r"\bbench\b", config.getoption("markexpr") or ""))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the tests of the benchmark harnesses (marked bench) out of a run that does not ask for them.

    A hook, not `-m "not bench"` in addopts: a second -m on the command line (`-m "not slow"`) would replace it.
    """
    if wants_bench(config):
        return
    bench = [item for item in items if item.get_closest_marker("bench")]
    if bench:
        items[:] = [item for item in items if not item.get_closest_marker("bench")]
        config.hook.pytest_deselected(items=bench)
        config.stash[BENCH_LEFT_OUT] = len(bench)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    left_out = config.stash.get(BENCH_LEFT_OUT, 0)
    if left_out:
        tests = "test" if left_out == 1 else "tests"
        terminalreporter.write_line(f"{left_out} {tests} of benchmarks/ (marker bench) left out: --bench runs them")


def tiny_overrides(cache_dir: Path, pairs: int = 300, steps: int = 3, insight: bool = False) -> list[str]:
    """Hydra overrides for a seconds-long run; without the insight probe unless `insight` (its figures would take
    most of a tiny run's validations)."""
    from .tiny_models import CORPUS  # here, not at the top: tiny_models imports this module

    return [
        # the embedded corpus, whatever data an experiment picks (multi30k_gru picks Multi30k)
        f"data.dir={CORPUS}",
        "data.source=local",
        "data.train_prefix=train",
        "data.valid_prefix=val",
        "data.test_prefix=test",
        f"tokenizer.cache_dir={cache_dir}",
        f"data.cache_dir={cache_dir}",
        "tokenizer.vocab_size=200",
        f"data.max_train_pairs={pairs}",
        "model.embedding_size=16",
        "model.hidden_size=16",
        f"train.max_steps={steps}",
        "train.batch_tokens=400",
        "train.validate_every=2",
        "train.log_every=1",
        "train.max_valid_sentences=8",
        "train.test_beam_size=2",
        "train.device=cpu",
        "train.precision=fp32",  # a recipe may ask for bf16: emulated on CPUs without it, and slow
        f"train.insight={str(insight).lower()}",
    ]


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """Every test starts with the process's PyTorch thread count: a command run in-process (serve sets one
    thread per decoder) must not change the sums, and so the last digits, of the tests after it."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def spm_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spm")


def cli(
    module: str, *args: object, stdin: str | None = None, timeout: int = 300, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    """Run `python -m seq2seq.MODULE ARGS...` (from the repo root unless `cwd`), offline; capture its output."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", f"seq2seq.{module}", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
