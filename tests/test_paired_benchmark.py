"""benchmarks/paired_benchmark.py: two workers take turns on the same batches, and the report pairs their steps."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import BENCHMARKS, REPO, load_script
from .tiny_models import CORPUS, TINY_BENCHMARK

pytestmark = pytest.mark.bench

TINY = [*TINY_BENCHMARK, "data.test_prefix=test", "train.threads=1"]


@pytest.mark.slow
def test_paired_steps_of_two_configs(tmp_path, spm_cache):
    """One checkout, two configs (no input feeding against input feeding): same batches, every step paired."""
    out = tmp_path / "paired.json"
    command = [
        *(sys.executable, BENCHMARKS / "paired_benchmark.py", "--data-dir", CORPUS),
        *("--experiment", "gru", "--steps", "3", "--warmup-steps", "1", "--out", out),
        *("--baseline-override", "model.input_feeding=true"),
        *TINY,
        f"tokenizer.cache_dir={spm_cache}",
        f"data.cache_dir={spm_cache}",
        "model.input_feeding=false",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["same_batches"] and report["steps"] == 3 and len(report["speedups"]) == 3
    assert report["ours"]["package"] == report["baseline"]["package"] == str(REPO / "seq2seq")
    assert report["baseline"]["overrides"] == ["model.input_feeding=true"]
    assert report["ours"]["tokens_per_sec"] > 0 and report["baseline"]["tokens_per_sec"] > 0
    assert report["speedup_quartiles"][0] <= report["speedup_median"] <= report["speedup_quartiles"][2]
    assert "per-step speed-up" in proc.stdout


def test_a_baseline_that_is_no_checkout_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load_script("paired_benchmark").main(["--data-dir", str(tmp_path), "--baseline", str(tmp_path)])
    assert "not a checkout of this project" in capsys.readouterr().err


def test_quartiles_of_one_value():
    assert load_script("paired_benchmark").quartiles([1.25]) == [1.25, 1.25, 1.25]
