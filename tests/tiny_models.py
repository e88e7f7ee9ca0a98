"""The embedded corpus, and tiny untrained models and checkpoints on it, for the tests (seconds to build)."""

from __future__ import annotations

from collections.abc import Mapping
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
DECODE = {"max_len_b": 6}  # the tiny models' decode settings: short outputs


def corpus_lines(split: str = "train", count: int = 300) -> tuple[list[str], list[str]]:
    """The first `count` (German, English) lines of a split of the embedded corpus."""
    src = (CORPUS / f"{split}.de").read_text(encoding="utf-8").splitlines()[:count]
    tgt = (CORPUS / f"{split}.en").read_text(encoding="utf-8").splitlines()[:count]
    return src, tgt


def write_corpus(folder: Path, train: int = 300, val: int = 20, test: int = 20) -> Path:
    """The first lines of each split of the embedded corpus as `folder`/SPLIT.de and SPLIT.en, one line each,
    newline-terminated (a split of 0 lines is left out); returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("val", val), ("test", test)):
        if count:
            for lang, lines in zip(("de", "en"), corpus_lines(split, count)):
                (folder / f"{split}.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


def tiny_tokenizer(
    cache_dir: Path | None = None, vocab_size: int = 150, *, joint: bool = False, pairs: int = 300, **settings: Any
) -> Tokenizer:
    """SentencePiece models trained in memory on the first `pairs` training pairs: one per side, or one `joint`
    model on the source lines then the target lines (byte for byte what `build_tokenizer` trains on a corpus that
    small). `settings`: other `TokenizerConfig` fields (type="bpe").

    Nothing is cached (`cache_dir` is accepted and unused), so this does not depend on the cache's API.
    """
    src, tgt = corpus_lines("train", pairs)
    cfg = TokenizerConfig(vocab_size=vocab_size, joint=joint, **settings)
    if joint:
        return Tokenizer(train_sentencepiece(src + tgt, cfg))
    return Tokenizer(train_sentencepiece(src, cfg), train_sentencepiece(tgt, cfg))


def tiny_model(
    tokenizer: Tokenizer, seed: int, decode: Mapping[str, Any] = DECODE, **model: Any
) -> tuple[Seq2Seq, Config]:
    """An untrained model (eval mode) with embeddings and hidden states of 8 unless `model` says otherwise, and its
    config, whose decode section is `decode` (`{}`: the defaults)."""
    config = Config.from_dict({"model": {"embedding_size": 8, "hidden_size": 8, **model}, "decode": dict(decode)})
    torch.manual_seed(seed)
    return build_model(config.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size).eval(), config


def tiny_checkpoint(
    path: Path, tokenizer: Tokenizer, seed: int, decode: Mapping[str, Any] = DECODE, **model: Any
) -> Path:
    """Save `tiny_model(tokenizer, seed, decode, **model)` as a self-contained checkpoint at `path` (its folders
    made: `run / "checkpoints" / "best.pt"` is a run folder as training leaves it)."""
    net, config = tiny_model(tokenizer, seed, decode, **model)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"model": net.state_dict(), "config": config.to_dict(), "tokenizer": tokenizer.to_dict()})
    return path
