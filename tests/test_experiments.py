"""Every experiment composes with Hydra and trains a few steps (tiny sizes) on the embedded corpus."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import yaml

from seq2seq.compose import compose
from seq2seq.config import Config, ConfigError
from seq2seq.data.batches import make_batch
from seq2seq.model.seq2seq import build_model
from seq2seq.training.run import train

from .conftest import CONF, EXPERIMENTS, tiny_overrides


def compose_config(overrides):
    return compose(overrides=overrides)


def test_the_required_experiments_exist():
    assert {"gru", "lstm", "rnn", "lstm_noattn"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_its_model_runs(experiment, spm_cache):
    config = compose(experiment, tiny_overrides(spm_cache))
    assert config.model.cell in ("rnn", "lstm", "gru")
    model = build_model(config.model, src_vocab_size=50, tgt_vocab_size=60)
    batch = make_batch([[5, 6, 7], [8, 9]], [[5, 6], [7, 8, 9]])
    assert model(batch.src, batch.src_lengths, batch.tgt_in).shape == (2, 4, 60)  # (batch, tgt_len + 1, vocab)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains(experiment, tmp_path, spm_cache):
    config = compose(experiment, tiny_overrides(spm_cache))
    results = train(config, tmp_path)
    assert results.train.steps == 3
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


def test_unknown_override_is_refused_naming_the_closest_key():
    with pytest.raises(ConfigError, match=r"unknown config key model\.hiden_size; did you mean model\.hidden_size\?"):
        compose_config(["model.hiden_size=3"])
    with pytest.raises(ConfigError, match=r"unknown config key train\.lr_rate; did you mean train\.lr\?"):
        compose_config(["+train.lr_rate=1"])


def test_a_wrongly_typed_value_is_refused_by_the_schema():
    with pytest.raises(Exception, match="train.lr"):
        compose_config(["train.lr=fast"])


def test_the_defaults_are_the_dataclasses():
    """One home for every default: composing no override gives exactly the dataclasses' defaults."""
    assert compose_config([]) == Config()


@pytest.mark.parametrize("group", ["data", "decode"])
def test_group_files_hold_only_what_differs_from_the_defaults(group):
    defaults = dataclasses.asdict(getattr(Config(), group))
    for path in sorted((CONF / group).glob("*.yaml")):
        values = yaml.safe_load(path.read_text()) or {}
        assert set(values) <= set(defaults), path.name
        same = [k for k, v in values.items() if defaults[k] == v and k != "name"]
        assert not same, f"{path.name} repeats defaults: {same}"


def test_the_main_config_holds_no_defaults_of_its_own():
    assert set(yaml.safe_load((CONF / "config.yaml").read_text())) == {"defaults", "hydra"}


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
