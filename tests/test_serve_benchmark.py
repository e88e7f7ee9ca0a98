"""benchmarks/serve_benchmark.py: its arithmetic and table, and (slow) a tiny end-to-end run against the CLI."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from .conftest import BENCHMARKS, REPO, load_script
from .test_serve import LINES, tiny_run

pytestmark = pytest.mark.bench

serve_benchmark = load_script("serve_benchmark")


def test_percentiles_interpolate_between_ranks():
    assert serve_benchmark.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert serve_benchmark.percentile([1.0, 2.0], 50) == 1.5
    assert serve_benchmark.percentile(list(map(float, range(101))), 99) == 99.0
    assert serve_benchmark.percentile([5.0], 99) == 5.0


def test_the_table_has_a_row_per_measurement_and_dashes_for_what_does_not_apply():
    rows = [
        {"mode": "translate (command line)", "clients": None, "sentences": 4, "sentences_per_sec": 2.0},
        {"mode": "serve", "clients": 8, "sentences": 4, "sentences_per_sec": 9.5, "p50_ms": 1.0, "wrong": 0},
    ]
    table = serve_benchmark.markdown(rows).splitlines()
    assert len(table) == 4 and table[0].startswith("| mode | clients |")
    assert table[2].startswith("| translate (command line) | — | 4 | 2.0 | — |")
    assert table[3].startswith("| serve | 8 | 4 | 9.5 | 1.0 |")


def test_repeated_rounds_report_medians_and_every_failure():
    base = {"mode": "serve", "clients": 8, "sentences": 4, "client_cpu_s": 1.0, "server_cpu_s": None}
    rounds = [
        base
        | {"seconds": s, "sentences_per_sec": r, "p50_ms": p, "p99_ms": p * 2, "batches": 3, "largest_batch": b}
        | {"wrong": w, "missing": 0}
        for s, r, p, b, w in ((1.0, 10.0, 5.0, 4, 0), (2.0, 30.0, 7.0, 6, 1), (3.0, 20.0, 9.0, 5, 0))
    ]
    row = serve_benchmark.median_round(rounds)
    assert (row["sentences_per_sec"], row["p50_ms"], row["p99_ms"], row["seconds"]) == (20.0, 7.0, 14.0, 2.0)
    assert row["wrong"] == 1 and row["largest_batch"] == 6 and row["repeats"] == 3 and row["server_cpu_s"] is None
    assert row["all_sentences_per_sec"] == [10.0, 30.0, 20.0]


def test_sentences_are_the_first_non_empty_lines_of_plain_or_gzip_files(tmp_path):
    (tmp_path / "a.de").write_text("eins\n\nzwei\ndrei\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.de.gz", "wt", encoding="utf-8") as f:
        f.write("eins\n\nzwei\ndrei\n")
    for name in ("a.de", "b.de.gz"):
        assert serve_benchmark.read_sentences(tmp_path / name, 2) == ["eins", "zwei"]


@pytest.mark.slow  # starts translate twice and a server
def test_a_tiny_benchmark_finds_no_wrong_or_missing_response(tmp_path):
    run = tiny_run(tmp_path / "run", cell="gru")
    (tmp_path / "src.de").write_text("\n".join(line for line in LINES if line.strip()) + "\n", encoding="utf-8")
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, str(BENCHMARKS / "serve_benchmark.py"), "--checkpoint", str(run)]
    command += ["--src", str(tmp_path / "src.de"), "--sentences", "6", "--clients", "1", "3", "--out", str(out)]
    command += ["--repeats", "2"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(row["mode"], row["clients"]) for row in rows] == [
        ("translate (command line)", None),
        ("serve", 1),
        ("serve", 3),
    ]
    assert all(row["sentences"] == 3 and row["wrong"] == 0 and row["missing"] == 0 for row in rows)
    assert "only 3 non-empty lines" in done.stderr and "| serve | 3 | 3 |" in done.stdout
