"""benchmarks/data_benchmark.py: the synthetic corpus, the log parser, and (slow) one tiny end-to-end run."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.config import DataConfig
from seq2seq.data.corpus import load_corpus

from .conftest import BENCHMARKS, REPO, load_script

pytestmark = pytest.mark.bench

SCRIPT = BENCHMARKS / "data_benchmark.py"
bench = load_script("data_benchmark")

SOURCE = 12  # sentences in the fake Multi30k
WORDS = {"de": 5, "en": 6}  # words per fake sentence


def fake_multi30k(folder: Path) -> Path:
    """A Multi30k-shaped folder: gzipped train (sentence k: 'de<k> w w w w'), plain val and test."""
    folder.mkdir()
    for lang, words in WORDS.items():
        train = [" ".join([f"{lang}{k}"] + ["w"] * (words - 1)) for k in range(SOURCE)]
        with gzip.open(folder / f"train.{lang}.gz", "wt", encoding="utf-8") as f:
            f.write("\n".join(train) + "\n")
        for prefix in ("val", "test_2016_flickr"):
            (folder / f"{prefix}.{lang}").write_text(f"{prefix} {lang} eins\n{prefix} {lang} zwei\n", encoding="utf-8")
    return folder


def test_generator_writes_n_aligned_pairs_of_two_sentences(tmp_path):
    source = fake_multi30k(tmp_path / "multi30k")
    meta = bench.generate_corpus(source, tmp_path / "pairs_50", 50, seed=3)
    de = (tmp_path / "pairs_50" / "train.de").read_text(encoding="utf-8").splitlines()
    en = (tmp_path / "pairs_50" / "train.en").read_text(encoding="utf-8").splitlines()
    assert len(de) == len(en) == 50 == meta["pairs"]
    sentences = []
    for src, tgt in zip(de, en):
        # two or three sentences a line, the same sentence numbers on both sides, never one sentence twice
        src_ids = [w[2:] for w in src.split() if w.startswith("de")]
        tgt_ids = [w[2:] for w in tgt.split() if w.startswith("en")]
        assert len(src_ids) in (2, 3) and src_ids == tgt_ids and len(set(src_ids)) == len(src_ids)
        assert len(src.split()) == len(src_ids) * WORDS["de"] and len(tgt.split()) == len(src_ids) * WORDS["en"]
        sentences.append(len(src_ids))
    assert 0 < sentences.count(3) < 30  # a third sentence on about a third of the lines
    mean = sum(sentences) / len(sentences)
    assert meta["words_per_line"] == {"de": round(mean * WORDS["de"], 2), "en": round(mean * WORDS["en"], 2)}
    assert len(set(de)) > 10  # drawn at random, not the same line 50 times
    for prefix in ("val", "test_2016_flickr"):
        for lang in WORDS:
            assert (tmp_path / "pairs_50" / f"{prefix}.{lang}").read_text() == (source / f"{prefix}.{lang}").read_text()
    # the format `data.dir` reads
    cfg = DataConfig(dir=str(tmp_path / "pairs_50"), test_prefix="test_2016_flickr", cache_dir=None)
    splits = load_corpus(cfg)
    assert (len(splits["train"]), len(splits["valid"]), len(splits["test"])) == (50, 2, 2)


def test_generator_is_deterministic_and_reuses_a_finished_corpus(tmp_path):
    source = fake_multi30k(tmp_path / "multi30k")
    bench.generate_corpus(source, tmp_path / "a", 30, seed=7)
    bench.generate_corpus(source, tmp_path / "b", 30, seed=7)
    assert (tmp_path / "a" / "train.de").read_bytes() == (tmp_path / "b" / "train.de").read_bytes()
    bench.generate_corpus(source, tmp_path / "c", 30, seed=8)
    assert (tmp_path / "a" / "train.de").read_bytes() != (tmp_path / "c" / "train.de").read_bytes()
    # same pairs, seed and source: the folder is reused as it is; another N rewrites it
    stamp = (tmp_path / "a" / "train.de").stat().st_mtime_ns
    bench.generate_corpus(source, tmp_path / "a", 30, seed=7)
    assert (tmp_path / "a" / "train.de").stat().st_mtime_ns == stamp
    assert bench.generate_corpus(source, tmp_path / "a", 40, seed=7)["pairs"] == 40
    assert len((tmp_path / "a" / "train.en").read_text().splitlines()) == 40


@pytest.mark.parametrize(
    ("text", "pairs"), [("100000", 100_000), ("100k", 100_000), ("1M", 10**6), ("4.5M", 4_500_000)]
)
def test_pair_counts(text, pairs):
    assert bench.parse_count(text) == pairs


def log_line(clock: str, logger: str, message: str) -> str:
    return f"[2026-11-30 10:00:{clock}][seq2seq.{logger}][INFO] - {message}"


LOG = [
    log_line("02,000", "train", "run directory: /tmp/run"),
    log_line("05,500", "corpus", "train (/c/train.de + train.en): kept 100 of 100 pairs (0 with an empty side)"),
    log_line("05,600", "corpus", "valid (/c/val.de + val.en): kept 2 of 2 pairs (0 with an empty side)"),
    log_line("06,000", "corpus", "test (/c/test.de + test.en): kept 2 of 2 pairs (0 with an empty side)"),
    log_line("06,100", "tokenizer", "tokenizer: training separate bpe SentencePiece model(s), vocab_size=5000"),
    log_line("16,000", "tokenizer", "tokenizer: source vocab 5000, target vocab 5000"),
    log_line("17,000", "encoded", "train: encoding 100 pairs into the cache /c/cache/abc"),
    log_line("27,000", "data", "train: 99 pairs after length filtering (dropped 0 over data.max_length=100, 1 ...)"),
    log_line("28,000", "trainer", "model: gru, 4530000 parameters, on cpu, precision fp32"),
    "  a continuation line without a stamp",
    log_line("30,250", "trainer", "step 1  epoch 1  loss 8.5  lr 2.00e-03  grad_norm 1.0  1500 tok/s"),
    log_line("31,000", "trainer", "step 10  epoch 1  loss 8.5  lr 2.00e-03  grad_norm 1.0  1500 tok/s"),
]


def test_log_parser_reads_hydra_stamps_as_local_time():
    when, logger, level, message = bench.parse_log_line(LOG[0])
    assert when == dt.datetime(2026, 11, 30, 10, 0, 2).timestamp()
    assert (logger, level, message) == ("seq2seq.train", "INFO", "run directory: /tmp/run")
    assert bench.parse_log_line("  a continuation line without a stamp") is None
    assert bench.parse_log_line("[2026-11-30 10:00:02][x][INFO] - no milliseconds") is None


def test_phases_of_a_cold_run():
    start = dt.datetime(2026, 11, 30, 10, 0, 0).timestamp()
    events = bench.log_events(LOG)
    assert "spm_training" in events and "cache_building" in events and "cache_found" not in events
    assert events["first_step"] - start == pytest.approx(30.25)  # step 1, not step 10
    phases = bench.phase_times(events, start)
    assert phases == {
        "startup": 2.0,
        "before_tokenizer": 4.1,  # fingerprint, then the three splits
        "tokenizer": 9.9,
        "encode": 11.0,
        "valid_test": None,  # read before the tokenizer
        "trainer_setup": 1.0,
        "first_step": 2.25,
        "preprocessing": 25.0,
        "start_to_first_step": 30.25,
        "start_to_training_done": None,  # the run was cut short: no "stopped after" line
    }


def test_phases_of_a_cached_run_that_skips_the_training_text():
    lines = [
        log_line("01,000", "train", "run directory: /tmp/run"),
        log_line("01,400", "tokenizer", "tokenizer: reusing cached SentencePiece model(s) /s/x"),
        log_line("01,400", "tokenizer", "tokenizer: source vocab 5000, target vocab 5000"),
        log_line("01,500", "encoded", "train: encoded pairs from the cache /c/abc (the training text was not read)"),
        log_line("01,600", "encoded", "train: 99 pairs after length filtering (dropped 0, 1)"),
        log_line("02,500", "corpus", "valid (/c/v.de + v.en): kept 2 of 2 pairs (0 with an empty side)"),
        log_line("02,600", "corpus", "test (/c/t.de + t.en): kept 2 of 2 pairs (0 with an empty side)"),
        log_line("04,000", "trainer", "model: gru, 4530000 parameters, on cpu, precision fp32"),
    ]
    events = bench.log_events(lines)
    assert "spm_reused" in events and "cache_found" in events and "cache_building" not in events
    assert "train_read" not in events
    phases = bench.phase_times(events, dt.datetime(2026, 11, 30, 10, 0, 0).timestamp())
    assert (phases["before_tokenizer"], phases["tokenizer"], phases["encode"]) == (0.4, 0.0, 0.2)
    assert (phases["valid_test"], phases["trainer_setup"], phases["preprocessing"]) == (1.0, 1.4, 1.6)
    assert phases["first_step"] is None and phases["start_to_first_step"] is None


def test_markdown_table_from_partial_results():
    results = [
        {
            "pairs": 1000,
            "corpus": {"words_per_line": {"de": 24.1, "en": 25.9}, "train_mb": 0.3},
            "cache_mb": 0.2,
            "spm_mb": 0.6,
            "runs": {
                "cold": {"phases_s": {"preprocessing": 12.0, "start_to_first_step": 20.0}, "peak_rss_mb_wait4": 900.0}
            },
        }
    ]
    table = bench.markdown(results)
    assert "| 1,000 | 24.1 / 25.9 | 0.3 | 12.0 | 20.0 | – | 0.2 + 0.6 | 900 / – |" in table
    assert "| 1,000 | cold |" in table


@pytest.mark.slow
def test_a_tiny_benchmark_runs_end_to_end(tmp_path):
    source = fake_multi30k(tmp_path / "multi30k")
    out = tmp_path / "bench.json"
    tiny = ["model.embedding_size=16", "model.hidden_size=16", "tokenizer.vocab_size=60", "train.batch_tokens=200"]
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--source-dir", source, "--pairs", "200", "--steps", "2", "--work", tmp_path / "w",
         "--out", out, "train.device=cpu", *tiny],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    (entry,) = report["results"]
    cold, cached = entry["runs"]["cold"], entry["runs"]["cached"]
    assert cold["spm_trained"] and cold["cache_built"]
    assert not cached["spm_trained"] and not cached["cache_built"]
    for run in (cold, cached):
        assert run["exit_code"] == 0
        assert 0 < run["phases_s"]["start_to_first_step"] < run["wall_s"]
        assert run["peak_rss_mb_wait4"] > 50 and run["peak_rss_mb_sum"] > 50
    assert entry["cache_mb"] > 0 and entry["spm_mb"] > 0
    assert "| 200 |" in proc.stdout and report["machine"]["cpu_count"]
