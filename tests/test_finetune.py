"""Fine-tuning (train.init_from, train.freeze): a new run from a trained model's weights and subwords; the
architecture kept (a conflicting command-line key is an error); frozen parts bitwise unchanged; resume exact."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq.checkpoint import CheckpointError, load_checkpoint
from seq2seq.config import Config, ConfigError
from seq2seq.training.run import train

from .tiny_models import corpus_lines


def corpus(folder: Path, first: int, count: int) -> Path:
    """Training pairs `first` .. `first + count` of the embedded corpus, and 8 validation and test pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    src, tgt = corpus_lines("train", first + count)
    for lang, lines in (("de", src[first:]), ("en", tgt[first:])):
        (folder / f"train.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for split in ("val", "test"):
        for lang, lines in zip(("de", "en"), corpus_lines(split, 8)):
            (folder / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def tiny_config(data: Path, cache: Path, **train: Any) -> Config:
    return Config.from_dict(
        {
            "data": {"dir": str(data), "source": "local", "cache_dir": str(cache / "data")},
            "tokenizer": {"vocab_size": 150, "cache_dir": str(cache / "spm")},
            "model": {"embedding_size": 16, "hidden_size": 16},
            "train": {
                "max_steps": 3,
                "batch_tokens": 400,
                "validate_every": 2,
                "log_every": 1,
                "device": "cpu",
                "insight": False,
                "test_beam_size": 2,
                "lr": 0.01,
                **train,
            },
        }
    )


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A trained run (3 steps on training pairs 0..300) whose best.pt the fine-tuning runs start from."""
    root = tmp_path_factory.mktemp("parent")
    train(tiny_config(corpus(root / "corpus", 0, 300), root), root / "run")
    return root / "run"


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_a_finetuning_run_starts_from_the_checkpoint_and_keeps_its_subwords(parent, tmp_path, caplog):
    base = load_checkpoint(parent / "checkpoints" / "best.pt")
    # another corpus, and an experiment whose architecture and vocabulary differ from the checkpoint's
    data = corpus(tmp_path / "corpus", 300, 300)  # insight on: its gradient probe goes through the frozen encoder
    config = tiny_config(
        data, tmp_path, init_from=str(parent), freeze=["encoder"], insight=True, insight_sentences=1, validate_every=3
    )
    config.model.hidden_size, config.tokenizer.vocab_size = 32, 500
    with caplog.at_level(logging.INFO):
        results = train(config, tmp_path / "run")
    log = caplog.text
    assert "the checkpoint's architecture is kept: model.hidden_size: 32 here, 16 in the checkpoint" in log
    assert "do not apply: tokenizer.vocab_size=500" in log
    assert "unknown pieces" in log and "pieces per word on the validation set" in log
    assert "train.freeze=['encoder']" in log
    assert not (tmp_path / "spm").exists()  # no SentencePiece training: the checkpoint's models
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["tokenizer"] == base["tokenizer"] and last["config"]["model"]["hidden_size"] == 16
    assert last["step"] == 3  # a fresh step counter (and optimizer: the checkpoint's is not read)
    for name, value in last["model"].items():
        unchanged = torch.equal(value, base["model"][name])
        assert unchanged == name.startswith("encoder."), name  # the frozen encoder, bit for bit; the rest trained
    assert results is not None and results.train.steps == 3


def test_a_command_line_architecture_key_that_differs_is_an_error(parent, tmp_path):
    config = tiny_config(corpus(tmp_path / "corpus", 300, 100), tmp_path, init_from=str(parent))
    config.model.hidden_size = 32
    with pytest.raises(ConfigError, match=r"model\.hidden_size: 32 here, 16 in the checkpoint"):
        train(config, tmp_path / "run", given=["model.hidden_size", "train.init_from"])


def test_resuming_a_finetuning_run_is_exact_and_does_not_reread_the_start(parent, tmp_path):
    start = tmp_path / "start.pt"
    shutil.copy(parent / "checkpoints" / "best.pt", start)
    data = corpus(tmp_path / "corpus", 300, 200)
    straight = tiny_config(data, tmp_path / "a", init_from=str(start), max_steps=4, validate_every=2)
    train(straight, tmp_path / "straight")
    train(tiny_config(data, tmp_path / "b", init_from=str(start), max_steps=2, validate_every=2), tmp_path / "split")
    start.unlink()  # the resumed run has its own checkpoint: the model it started from is not needed
    resumed = tiny_config(data, tmp_path / "b", init_from=str(start), max_steps=4, validate_every=2, resume="auto")
    train(resumed, tmp_path / "split")
    a, b = (weights(tmp_path / run / "checkpoints" / "last.pt") for run in ("straight", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_init_from_must_name_a_checkpoint(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    for target, words in ((tmp_path / "missing.pt", "missing.pt"), (text, "notes.txt"), (empty, "no checkpoint")):
        config = tiny_config(corpus(tmp_path / "corpus", 0, 50), tmp_path, init_from=str(target))
        with pytest.raises(CheckpointError) as error:
            train(config, tmp_path / "run")
        assert str(error.value).startswith("train.init_from: ") and words in str(error.value)


@pytest.mark.parametrize(
    "train_keys,words",
    [
        ({"freeze": ["encoder"]}, "train.freeze keeps trained parts fixed: it needs train.init_from"),
        ({"init_from": "x.pt", "freeze": ["encoders"]}, "train.freeze='encoders' is not allowed"),
        ({"init_from": "x.pt", "freeze": "encoder"}, "train.freeze must be a list"),
        ({"init_from": " "}, "train.init_from must be a checkpoint path"),
    ],
)
def test_bad_finetuning_keys_name_the_key(train_keys, words):
    with pytest.raises(ConfigError) as error:
        Config.from_dict({"train": train_keys})
    assert words in str(error.value)
