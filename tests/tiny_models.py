"""Tiny untrained models and checkpoints on the embedded corpus, for the decoding tests (seconds to build)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import save_checkpoint
from seq2seq.config import Config, TokenizerConfig
from seq2seq.data.tokenizer import Tokenizer, train_sentencepiece
from seq2seq.model.seq2seq import Seq2Seq, build_model

from .conftest import REPO

CORPUS = REPO / "data" / "synth_de_en"
TINY_BENCHMARK = [  # overrides that make the benchmark scripts' trainings take seconds on the embedded corpus
    "model.embedding_size=16",
    "model.hidden_size=16",
    "tokenizer.vocab_size=200",
    "train.batch_tokens=300",
    "data.max_train_pairs=300",
    "train.device=cpu",
]


def corpus_lines(split: str = "train", count: int = 300) -> tuple[list[str], list[str]]:
    """The first `count` (German, English) lines of a split of the embedded corpus."""
    src = (CORPUS / f"{split}.de").read_text(encoding="utf-8").splitlines()[:count]
    tgt = (CORPUS / f"{split}.en").read_text(encoding="utf-8").splitlines()[:count]
    return src, tgt


def tiny_tokenizer(cache_dir: Path | None = None, vocab_size: int = 150) -> Tokenizer:
    """Separate source and target SentencePiece models, trained in memory on 300 pairs.

    Nothing is cached (`cache_dir` is accepted and unused), so this does not depend on the cache's API.
    """
    src, tgt = corpus_lines()
    cfg = TokenizerConfig(vocab_size=vocab_size)
    return Tokenizer(train_sentencepiece(src, cfg), train_sentencepiece(tgt, cfg))


def tiny_model(tokenizer: Tokenizer, seed: int, **model: Any) -> tuple[Seq2Seq, Config]:
    """An untrained model (eval mode) with embeddings and hidden states of 8 unless `model` says otherwise."""
    config = Config.from_dict({"model": {"embedding_size": 8, "hidden_size": 8, **model}, "decode": {"max_len_b": 6}})
    torch.manual_seed(seed)
    return build_model(config.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size).eval(), config


def tiny_checkpoint(path: Path, tokenizer: Tokenizer, seed: int, **model: Any) -> Path:
    """Save `tiny_model(tokenizer, seed, **model)` as a self-contained checkpoint at `path`."""
    net, config = tiny_model(tokenizer, seed, **model)
    save_checkpoint(path, {"model": net.state_dict(), "config": config.to_dict(), "tokenizer": tokenizer.to_dict()})
    return path
