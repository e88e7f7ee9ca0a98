"""SentencePiece subword models: trained once on the training split, cached, and carried in checkpoints.

Every model uses the same special ids, so batches and search never need to ask:
pad = 0, unk = 1, bos = 2, eos = 3.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from seq2seq.config import TokenizerConfig
from seq2seq.files import update_with_corpus, write_atomic

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

log = logging.getLogger(__name__)


class Tokenizer:
    """Source and target SentencePiece processors (the same object when `joint`)."""

    def __init__(self, src_model: bytes, tgt_model: bytes | None = None) -> None:
        self.joint = tgt_model is None
        self._src_bytes = src_model
        self._tgt_bytes = tgt_model
        self.src = spm.SentencePieceProcessor(model_proto=src_model)
        self.tgt = self.src if tgt_model is None else spm.SentencePieceProcessor(model_proto=tgt_model)

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, lines: Sequence[str]) -> list[list[int]]:
        return self.src.encode(list(lines), out_type=int)

    def encode_tgt(self, lines: Sequence[str]) -> list[list[int]]:
        return self.tgt.encode(list(lines), out_type=int)

    def decode_tgt(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Detokenize target ids (special ids are dropped) back to plain text."""
        return [self.tgt.decode([int(i) for i in seq if i > EOS_ID]) for seq in ids]

    def src_pieces(self, line: str) -> list[str]:
        return self.src.encode(line, out_type=str)

    def tgt_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.tgt.id_to_piece(int(i)) for i in ids]

    def to_dict(self) -> dict[str, bytes | None]:
        """Plain bytes, so the tokenizer travels in a `weights_only` checkpoint."""
        return {"src": self._src_bytes, "tgt": self._tgt_bytes}

    @classmethod
    def from_dict(cls, state: dict[str, bytes | None]) -> Tokenizer:
        src = state["src"]
        if not isinstance(src, bytes):
            raise ValueError("tokenizer state must hold the SentencePiece model as bytes under 'src'")
        return cls(src, state.get("tgt"))


def train_sentencepiece(lines: Sequence[str], cfg: TokenizerConfig) -> bytes:
    """Train one SentencePiece model in memory and return its serialized proto."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type=cfg.type,
        vocab_size=cfg.vocab_size,
        character_coverage=cfg.character_coverage,
        hard_vocab_limit=False,  # small corpora cannot always fill vocab_size; take what there is
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
    return model.getvalue()


def build_tokenizer(
    src_lines: Sequence[str], tgt_lines: Sequence[str], cfg: TokenizerConfig, source_key: str | None = None
) -> Tokenizer:
    """Train (or load from the cache) the subword model(s) for this corpus and these settings.

    The cache key hashes the settings and the corpus: its `source_key` (a fingerprint of the files, see
    `corpus.fingerprint`) when given, else the training text itself. A change to either trains a new
    model, and an unchanged run reuses the old one.
    """
    paths = _cache_paths(cfg, _cache_key(src_lines, tgt_lines, cfg, source_key))
    cached = _load_cached(paths)
    if cached is not None:
        return cached
    log.info(
        "tokenizer: training %s SentencePiece %s model(s), vocab_size=%d",
        "a joint" if cfg.joint else "separate",
        cfg.type,
        cfg.vocab_size,
    )
    if cfg.joint:
        models = {"joint": train_sentencepiece(list(src_lines) + list(tgt_lines), cfg)}
    else:
        models = {"src": train_sentencepiece(src_lines, cfg), "tgt": train_sentencepiece(tgt_lines, cfg)}
    for side, data in models.items():
        write_atomic(paths[side], data)
    tokenizer = Tokenizer(models["joint"]) if cfg.joint else Tokenizer(models["src"], models["tgt"])
    log.info("tokenizer: source vocab %d, target vocab %d", tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    return tokenizer


def cached_tokenizer(source_key: str, cfg: TokenizerConfig) -> Tokenizer | None:
    """The tokenizer `build_tokenizer(..., source_key=source_key)` trained earlier, without the text; or None."""
    return _load_cached(_cache_paths(cfg, _cache_key([], [], cfg, source_key)))


def _cache_paths(cfg: TokenizerConfig, key: str) -> dict[str, Path]:
    cache = Path(cfg.cache_dir).expanduser()
    return {side: cache / f"{key}.{side}.model" for side in (("joint",) if cfg.joint else ("src", "tgt"))}


def _load_cached(paths: dict[str, Path]) -> Tokenizer | None:
    """The cached model(s) at `paths` (logged), or None when any is missing."""
    if not all(p.is_file() for p in paths.values()):
        return None
    models = {side: p.read_bytes() for side, p in paths.items()}
    tokenizer = Tokenizer(models["joint"]) if "joint" in models else Tokenizer(models["src"], models["tgt"])
    log.info("tokenizer: reusing cached SentencePiece model(s) %s", ", ".join(str(p) for p in paths.values()))
    log.info("tokenizer: source vocab %d, target vocab %d", tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    return tokenizer


def _cache_key(
    src_lines: Sequence[str], tgt_lines: Sequence[str], cfg: TokenizerConfig, source_key: str | None = None
) -> str:
    settings = {
        "type": cfg.type,
        "vocab_size": cfg.vocab_size,
        "joint": cfg.joint,
        "character_coverage": cfg.character_coverage,
        "spm": spm.__version__,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    update_with_corpus(digest, source_key, (src_lines, tgt_lines))
    return digest.hexdigest()[:20]
