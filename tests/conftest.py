"""Shared fixtures: tiny settings that make any experiment train in seconds on the embedded corpus."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def load_script(name: str) -> ModuleType:
    """scripts/NAME.py as a module (scripts/ is not a package, and is not put on sys.path)."""
    module_name = f"seq2seq_scripts_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, REPO / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def tiny_overrides(cache_dir: Path, pairs: int = 300, steps: int = 3) -> list[str]:
    """Hydra overrides for a seconds-long run."""
    return [
        # the embedded corpus, whatever data an experiment picks (multi30k_gru picks Multi30k)
        f"data.dir={REPO / 'data' / 'synth_de_en'}",
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
    ]


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
