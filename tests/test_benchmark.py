"""The benchmark harness runs end to end (tiny sizes; the numbers themselves are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys

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
    assert "| training target tokens/s" in proc.stdout
