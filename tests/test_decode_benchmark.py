"""benchmarks/decode_benchmark.py: decoding variants run interleaved, summarized against their search's reference."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from seq2seq import shortlist

from .conftest import BENCHMARKS, REPO, load_script
from .tiny_models import tiny_checkpoint, tiny_tokenizer, write_corpus

pytestmark = pytest.mark.bench


def test_the_summary_takes_medians_and_compares_with_the_baseline_of_the_same_search():
    run = {"bleu": 30.0, "chrf": 50.0}
    results = {
        "beam5-fp32": [{**run, "sentences_per_sec": s} for s in (100.0, 120.0, 90.0)],
        "beam5-shortlist": [{**run, "bleu": 29.9, "sentences_per_sec": s} for s in (200.0, 210.0, 150.0)],
        "beam5-baseline": [{**run, "sentences_per_sec": s} for s in (80.0, 100.0, 120.0)],
        "greedy-fp32": [{**run, "sentences_per_sec": 300.0}],
    }
    summary = load_script("decode_benchmark").summarize(results)
    assert summary["beam5-shortlist"]["sentences_per_sec"] == 200.0
    assert summary["beam5-shortlist"]["speedup"] == 2.0 and summary["beam5-shortlist"]["bleu_change"] == -0.1
    assert summary["beam5-shortlist"]["paired_speedup"] == 2.1  # repeat by repeat: 200/80, 210/100, 150/120
    assert summary["beam5-fp32"]["speedup"] == 1.0  # against the baseline (100), not itself
    assert summary["greedy-fp32"]["speedup"] == 1.0  # no greedy baseline: its own fp32


def test_a_baseline_that_is_no_checkout_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load_script("decode_benchmark").main(["x.pt", "--src", "s", "--ref", "r", "--baseline", str(tmp_path)])
    assert "not a checkout of this project" in capsys.readouterr().err


@pytest.mark.slow
def test_variants_and_the_baseline_decode_a_checkpoint_with_a_shortlist(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "a.pt", tiny_tokenizer(), seed=0)
    write_corpus(tmp_path, train=300, val=20, test=0)
    shortlist_args = [str(checkpoint), "--src", str(tmp_path / "train.de"), "--tgt", str(tmp_path / "train.en")]
    assert shortlist.main(shortlist_args) == 0
    out = tmp_path / "decode.json"
    command = [
        *(sys.executable, BENCHMARKS / "decode_benchmark.py", checkpoint, "--repeats", "2", "--out", out),
        *("--src", tmp_path / "val.de", "--ref", tmp_path / "val.en", "--baseline", REPO),
        *("--variant", "greedy-fp32=--beam-size 1 --max-len-b 4"),
        *("--variant", "greedy-shortlist=--beam-size 1 --max-len-b 4 --shortlist"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(out.read_text())
    assert set(summary) == {"greedy-fp32", "greedy-shortlist", "greedy-baseline", "beam5-baseline"}
    assert summary["greedy-fp32"]["identical"] == summary["greedy-fp32"]["sentences"] == 20  # itself
    assert 0 <= summary["greedy-shortlist"]["identical"] <= 20 and "identical" not in summary["beam5-baseline"]
    assert all(len(entry["runs"]) == 2 and entry["sentences_per_sec"] > 0 for entry in summary.values())
    assert summary["greedy-shortlist"]["speedup"] > 0
    assert "| greedy-shortlist |" in proc.stdout
