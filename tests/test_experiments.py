"""Every experiment composes with Hydra and trains a few steps (tiny sizes) on the embedded corpus."""

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seq2seq.config import Config
from seq2seq.trainer import train

from .conftest import CONF, EXPERIMENTS, tiny_overrides


def compose_config(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_the_required_experiments_exist():
    assert {"gru", "lstm", "rnn", "lstm_noattn"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_trains(experiment, tmp_path, spm_cache):
    cfg = compose_config([f"+experiment={experiment}", *tiny_overrides(spm_cache)])
    config = Config.from_dict(OmegaConf.to_object(cfg))
    assert config.model.cell in ("rnn", "lstm", "gru")
    results = train(config, tmp_path)
    assert results["train"]["steps"] == 3
    assert (tmp_path / "checkpoints" / "best.pt").is_file() and (tmp_path / "checkpoints" / "last.pt").is_file()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {"greedy", "beam"} <= set(saved["test"])  # + "averaged" with train.average_checkpoints
    assert {"bleu", "chrf", "bleu_signature"} <= set(saved["test"]["beam"])


def test_experiment_files_hold_only_their_differences():
    for name in EXPERIMENTS:
        text = (CONF / "experiment" / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_"), name
        assert len([line for line in text.splitlines() if line.strip() and not line.startswith("#")]) <= 20, name


def test_experiments_differ_from_the_defaults_where_they_say():
    assert compose_config(["+experiment=lstm_noattn"]).model.attention == "none"
    assert compose_config(["+experiment=lstm"]).model.cell == "lstm"
    assert compose_config(["+experiment=rnn"]).model.cell == "rnn"
    gru = compose_config(["+experiment=gru"]).model
    assert (gru.cell, gru.attention, gru.bidirectional) == ("gru", "bahdanau", True)


def test_unknown_override_is_refused_by_hydra():
    with pytest.raises(Exception, match="hiden_size"):
        compose_config(["model.hiden_size=3"])


def test_yaml_defaults_equal_the_dataclass_defaults():
    """conf/ and seq2seq/config.py describe the same defaults (the README documents one set)."""
    assert Config.from_dict(OmegaConf.to_object(compose_config([]))) == Config()


CONSOLE_SCRIPT = "import sys; from seq2seq.train import main; sys.argv[0] = 'seq2seq-train'; main()"


def test_configs_are_found_from_any_working_directory(tmp_path):
    """As the installed `seq2seq-train` runs: another directory, the checkout not on sys.path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", CONSOLE_SCRIPT, "--cfg", "job", "+experiment=lstm"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cell: lstm" in proc.stdout
