"""The benchmark harness runs end to end (tiny sizes; the numbers themselves are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seq2seq.config import Config
from seq2seq.trainer import train

from .conftest import CONF, REPO, tiny_overrides

TINY = [
    "model.embedding_size=16",
    "model.hidden_size=16",
    "tokenizer.vocab_size=200",
    "train.batch_tokens=300",
    "data.max_train_pairs=300",
    "train.device=cpu",
]


def test_harness_reports_training_and_decoding(tmp_path, spm_cache):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+experiment=gru", *tiny_overrides(spm_cache)])
    results = train(Config.from_dict(OmegaConf.to_object(cfg)), tmp_path / "run")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            REPO / "scripts" / "benchmark.py",
            "--data-dir",
            REPO / "data" / "synth_de_en",
            "--experiment",
            "gru",
            "--checkpoint",
            results["checkpoint"],
            "--warmup-steps",
            "1",
            "--windows",
            "2",
            "--window-steps",
            "2",
            "--out",
            out,
            *TINY,
            f"tokenizer.cache_dir={spm_cache}",
            "data.test_prefix=test",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["training"]["tokens_per_sec_windows"]) == 2 and report["training"]["tokens_per_sec"] > 0
    assert report["training"]["peak_rss_mb"] > 0
    assert report["decoding"]["sentences"] == 500
    assert report["decoding"]["greedy"]["sentences_per_sec"] > 0 and "bleu" in report["decoding"]["beam5"]
    assert 0 < report["decoding"]["greedy"]["words_per_sentence"] < 50  # the output length behind the speed
    assert "| training target tokens/s" in proc.stdout


# --- the Joey NMT peer: pure parts only (no Joey venv, no network) ---------------------------------------

sys.path.insert(0, str(REPO / "scripts"))
import benchmark  # noqa: E402
import joeynmt_peer  # noqa: E402

JOEY_TRAIN_LOG = """\
2026-11-26 02:20:01,000 - INFO - joeynmt.model - Total params: 23456789
2026-11-26 02:20:05,000 - INFO - joeynmt.training - EPOCH 1
2026-11-26 02:20:20,000 - INFO - joeynmt.training - Epoch   1, Step:        5, Batch Loss:   40.1, Batch Acc: 0.01, \
Tokens per Sec:      512, Lr: 0.001000
2026-11-26 02:20:32,000 - INFO - joeynmt.training - Epoch   1, Step:       10, Batch Loss:   38.0, Batch Acc: 0.02, \
Tokens per Sec:      690, Lr: 0.001000
2026-11-26 02:20:44,000 - INFO - joeynmt.training - Epoch   1, Step:       15, Batch Loss:   36.5, Batch Acc: 0.03, \
Tokens per Sec:      710, Lr: 0.001000
2026-11-26 02:20:56,000 - INFO - joeynmt.training - Epoch   1, Step:       20, Batch Loss:   35.0, Batch Acc: 0.04, \
Tokens per Sec:      700, Lr: 0.001000
"""

JOEY_TEST_LOG = """\
2026-11-26 03:00:00,000 - INFO - joeynmt.prediction - Decoding on test set... (device: cpu, n_gpu: 0, use_ddp: False)
2026-11-26 03:00:00,100 - INFO - joeynmt.prediction - Predicting 1000 example(s)... (Greedy decoding with ...)
2026-11-26 03:00:20,100 - INFO - joeynmt.prediction - Generation took 20.0000[sec].
2026-11-26 03:00:21,000 - INFO - joeynmt.prediction - Evaluation result (greedy): bleu:  35.20, 20.9000[sec]
"""


def test_joey_log_parsers():
    assert joeynmt_peer.parse_train_log(JOEY_TRAIN_LOG) == [(5, 512.0), (10, 690.0), (15, 710.0), (20, 700.0)]
    assert joeynmt_peer.warmup_windows(3, 5) == 1 and joeynmt_peer.warmup_windows(0, 5) == 1
    assert joeynmt_peer.warmup_windows(7, 5) == 2
    summary = joeynmt_peer.training_summary(JOEY_TRAIN_LOG, warmup_steps=3, logging_freq=5)
    assert summary["tokens_per_sec_windows"] == [690, 710, 700] and summary["tokens_per_sec"] == 700
    assert summary["warmup_windows_dropped"] == [512] and summary["parameters"] == 23456789
    test = joeynmt_peer.parse_test_log(JOEY_TEST_LOG)["test"]
    assert test["sentences"] == 1000 and test["generation_seconds"] == 20.0 and test["bleu"] == 35.2


def test_joey_output_length(tmp_path):
    (tmp_path / "hyps.test").write_text("a dog runs .\n\ntwo men\n", encoding="utf-8")
    assert joeynmt_peer.mean_words(tmp_path / "hyps.test") == 2.0  # (4 + 0 + 2) / 3
    assert joeynmt_peer.mean_words(tmp_path / "missing") is None


def test_joey_inputs_and_config(tmp_path, spm_cache):
    import yaml

    from seq2seq.data import token_batches

    config = benchmark.compose(
        "multi30k_gru",
        str(REPO / "data" / "synth_de_en"),
        "de",
        "en",
        TINY[2:5]
        + [
            f"tokenizer.cache_dir={spm_cache}",
            "data.test_prefix=test",
        ],
    )
    inputs = joeynmt_peer.write_inputs(config, tmp_path / "joey")
    assert (tmp_path / "joey" / "train.de").read_text().count("\n") == 300
    pieces = (tmp_path / "joey" / "vocab.txt").read_text().splitlines()
    assert pieces[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and len(pieces) > 50
    cfg = joeynmt_peer.joey_config(config, inputs, tmp_path / "model", batch_size=128, updates=15, logging_freq=5)
    path = joeynmt_peer.write_yaml(cfg, tmp_path / "train.yaml")
    loaded = yaml.safe_load(path.read_text())
    assert loaded["training"]["updates"] == 15 and loaded["training"]["batch_type"] == "sentence"
    assert loaded["training"]["scheduling"] != "plateau"
    enc, dec = loaded["model"]["encoder"], loaded["model"]["decoder"]
    assert enc["type"] == dec["type"] == "recurrent" and enc["rnn_type"] == "gru" and enc["bidirectional"]
    assert dec["attention"] == "bahdanau" and enc["hidden_size"] == 512 and enc["embeddings"]["embedding_dim"] == 256
    assert loaded["data"]["src"]["tokenizer_cfg"]["model_file"] == inputs["model_file"]
    assert Path(loaded["data"]["train"] + ".en").is_file()
    lengths = [5, 6, 7, 8, 9, 10] * 100
    budget = benchmark.budget_for_sentences(lengths, lengths, 32)
    assert len(lengths) / len(token_batches(lengths, lengths, budget)) >= 32
    assert len(lengths) / len(token_batches(lengths, lengths, budget - 1)) < 32
