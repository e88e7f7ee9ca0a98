"""Fine-tuning: a new run that starts from a trained model's weights (`train.init_from`), some parts kept fixed
(`train.freeze`).

The checkpoint brings its architecture and its SentencePiece models: the new corpus is cut into the old
subwords, so no tokenizer is trained, and every weight fits. Everything else starts fresh, as in any new
run: the optimizer and its moments, the learning-rate schedule, early stopping, the step counter and the
checkpoints to average. A model key given on the command line that differs from the checkpoint's is an
error; one that an experiment file set is overridden by the checkpoint's, and logged. `train.resume` of a
fine-tuning run resumes that run (its own last.pt), not the model it started from. Freezing parts is the
model's business (`seq2seq.model.seq2seq.freeze`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seq2seq.checkpoint import CheckpointError, load_checkpoint
from seq2seq.config import Config, ConfigError, ModelConfig, TokenizerConfig
from seq2seq.data.prepare import PreparedData
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.run_folders import checkpoint_path
from seq2seq.vocab import UNK_ID

log = logging.getLogger("seq2seq.training.trainer")


# what defines the SentencePiece models (the checkpoint's); tokenizer.sampling_alpha, nbest_size and cache_dir
# are the run's own
SUBWORD_MODEL_KEYS = ("type", "vocab_size", "joint", "character_coverage", "sample_sentences")


@dataclass
class Initial:
    """What a fine-tuning run takes from its checkpoint."""

    path: Path
    model: dict[str, Any]  # the state dict
    model_config: ModelConfig
    tokenizer: Tokenizer
    tokenizer_config: TokenizerConfig


def load_initial(init_from: str) -> Initial:
    """The checkpoint (a file, or a run folder: its test model) that `train.init_from` names."""
    try:
        path = checkpoint_path(Path(init_from).expanduser())
        payload = load_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"train.init_from: {exc}") from None
    if "model" not in payload or "tokenizer" not in payload:
        raise ConfigError(f"train.init_from={init_from}: {path} holds no model weights and tokenizer")
    saved = Config.from_dict(payload["config"])
    return Initial(path, payload["model"], saved.model, Tokenizer.from_dict(payload["tokenizer"]), saved.tokenizer)


def adopt_architecture(
    config: Config, model: ModelConfig, tokenizer: TokenizerConfig, given: Collection[str]
) -> Config:
    """`config` with the checkpoint's model and tokenizer settings. A `model.*` key in `given` (set on the command
    line) that differs from the checkpoint's is a `ConfigError` naming both values; other differences are logged."""
    conflicts, overridden = [], []
    for f in dataclasses.fields(ModelConfig):
        key, ours, theirs = f"model.{f.name}", getattr(config.model, f.name), getattr(model, f.name)
        if ours != theirs:
            (conflicts if key in given else overridden).append(f"{key}: {ours!r} here, {theirs!r} in the checkpoint")
    if conflicts:
        raise ConfigError(
            "train.init_from keeps the checkpoint's architecture, but the command line changes it: "
            + "; ".join(conflicts)
            + " (drop those keys, or train from scratch without train.init_from)"
        )
    if overridden:
        log.info("train.init_from: the checkpoint's architecture is kept: %s", "; ".join(overridden))
    unused = [
        f"tokenizer.{key}={getattr(config.tokenizer, key)!r}"
        for key in SUBWORD_MODEL_KEYS
        if getattr(config.tokenizer, key) != getattr(tokenizer, key)
    ]
    if unused:
        log.info(
            "train.init_from: the checkpoint's SentencePiece models are used, so these do not apply: %s",
            ", ".join(unused),
        )
    kept = {key: getattr(tokenizer, key) for key in SUBWORD_MODEL_KEYS}  # subword sampling stays the run's choice
    return dataclasses.replace(config, model=model, tokenizer=dataclasses.replace(config.tokenizer, **kept))


def vocabulary_coverage(tokenizer: Tokenizer, data: PreparedData) -> str:
    """How well the checkpoint's subwords cover the new corpus: the share of unknown pieces among the training
    pairs' ids, and the pieces per word of the validation set, per side."""

    def pieces_per_word(lines: Sequence[str], encode: Any) -> float:
        words = sum(len(line.split()) for line in lines)
        return sum(len(ids) for ids in encode(list(lines))) / max(words, 1)

    train, valid = data.train, data.valid
    unk = [100 * float(np.count_nonzero(ids == UNK_ID)) / max(len(ids), 1) for ids in (train.src, train.tgt)]
    per_word = (pieces_per_word(valid.src, tokenizer.encode_src), pieces_per_word(valid.tgt, tokenizer.encode_tgt))
    return (
        f"the checkpoint's subwords on the new corpus: unknown pieces {unk[0]:.2f}% (source) and {unk[1]:.2f}% "
        f"(target) of the training pairs' tokens; {per_word[0]:.2f} and {per_word[1]:.2f} pieces per word on "
        "the validation set"
    )
