"""The encoded training set: token ids in flat arrays plus offsets, built once and memory-mapped after.

Encoding a large corpus with SentencePiece takes minutes and, kept as Python lists, gigabytes in every
process. `encode_training_set` does it once per (corpus, tokenizer, length filter) and writes

    CACHE_DIR/KEY/src.npy            int32 (all source tokens,): sentence i is src[src_offsets[i]:src_offsets[i + 1]]
    CACHE_DIR/KEY/src_offsets.npy    int64 (pairs + 1,)
    CACHE_DIR/KEY/tgt.npy, tgt_offsets.npy
    CACHE_DIR/KEY/meta.json          what was built and what the length filter dropped

Every later run (a resume, each torchrun rank, each job of a sweep) maps the same files with
`numpy.load(mmap_mode="r")`: the pages are shared through the OS page cache, not copied per process.
KEY hashes the training text, the SentencePiece model(s) and the filter settings, so a change to any
of them builds a new cache. A cache is built in a temporary folder and renamed into place only when
complete, so a build that is killed is never read, and of two processes building the same cache at
once one rename wins and the other process uses the winner's files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seq2seq.config import DataConfig
from seq2seq.corpus import CorpusError, ParallelCorpus, length_filter
from seq2seq.files import update_with_corpus
from seq2seq.tokenizer import Tokenizer

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ENCODE_CHUNK = 100_000  # sentences encoded at a time, so that only one chunk is ever held as Python lists
ARRAYS = ("src", "src_offsets", "tgt", "tgt_offsets")


@dataclass
class EncodedCorpus:
    """Parallel token-id sequences in two flat arrays with offsets (in memory, or mapped from the cache)."""

    src: np.ndarray  # (source tokens,) int32
    src_offsets: np.ndarray  # (pairs + 1,) int64
    tgt: np.ndarray  # (target tokens,) int32
    tgt_offsets: np.ndarray  # (pairs + 1,) int64

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    @property
    def src_lengths(self) -> np.ndarray:
        return np.diff(self.src_offsets)

    @property
    def tgt_lengths(self) -> np.ndarray:
        return np.diff(self.tgt_offsets)

    def pairs(self, indices: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The source and target id arrays of the pairs `indices` (views into the arrays, nothing copied)."""
        so, to = self.src_offsets, self.tgt_offsets
        return [self.src[so[i] : so[i + 1]] for i in indices], [self.tgt[to[i] : to[i + 1]] for i in indices]

    @classmethod
    def from_lists(cls, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]) -> EncodedCorpus:
        (src_flat, src_lengths), (tgt_flat, tgt_lengths) = _flatten(src), _flatten(tgt)
        return cls(src_flat, _offsets([src_lengths]), tgt_flat, _offsets([tgt_lengths]))

    def save(self, folder: Path) -> None:
        for name in ARRAYS:
            np.save(folder / f"{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, folder: Path) -> EncodedCorpus:
        return cls(*(np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS))


def _flatten(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ids -> (all ids one after another as int32, each row's length)."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    return np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(lengths.sum())), lengths


def _offsets(lengths: list[np.ndarray]) -> np.ndarray:
    """Row lengths (in parts) -> where each row starts in the flat array, plus the end: (rows + 1,) int64."""
    all_lengths = np.concatenate(lengths)
    offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=offsets[1:])
    return offsets


def encode_training_set(
    train: ParallelCorpus, tokenizer: Tokenizer, cfg: DataConfig, source_key: str | None = None
) -> EncodedCorpus:
    """The training pairs encoded and length-filtered: from the cache in `data.cache_dir`, built there if missing.

    `source_key` (`corpus.fingerprint` of the files) names the corpus in the cache key; without it the
    text itself is hashed. With `data.cache_dir=null` the arrays are built in memory and nothing is written.
    """
    if cfg.cache_dir is None:
        encoded, dropped = _encode(train, tokenizer, cfg)
        _log_filter(len(encoded), dropped, cfg)
        return encoded
    folder = Path(cfg.cache_dir).expanduser() / cache_key(train, tokenizer, cfg, source_key)
    if (folder / "meta.json").is_file():
        log.info("train: encoded pairs from the cache %s", folder)
    else:
        _build(folder, train, tokenizer, cfg)
    return _load(folder, cfg)


def cached_training_set(source_key: str, tokenizer: Tokenizer, cfg: DataConfig) -> EncodedCorpus | None:
    """The pairs `encode_training_set(..., source_key)` cached earlier, found without the text; or None."""
    if cfg.cache_dir is None:
        return None
    folder = Path(cfg.cache_dir).expanduser() / cache_key(ParallelCorpus([], []), tokenizer, cfg, source_key)
    if not (folder / "meta.json").is_file():
        return None
    log.info("train: encoded pairs from the cache %s (the training text was not read)", folder)
    return _load(folder, cfg)


def _load(folder: Path, cfg: DataConfig) -> EncodedCorpus:
    meta = json.loads((folder / "meta.json").read_text())
    encoded = EncodedCorpus.load(folder)
    _log_filter(len(encoded), meta["dropped"], cfg)
    return encoded


def cache_key(train: ParallelCorpus, tokenizer: Tokenizer, cfg: DataConfig, source_key: str | None = None) -> str:
    """A hash of everything the encoded arrays depend on: the corpus (its `source_key`, else its text), the
    subword model(s), the length filter."""
    settings = {"version": FORMAT_VERSION, "max_length": cfg.max_length, "max_length_ratio": cfg.max_length_ratio}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for model in tokenizer.to_dict().values():
        digest.update(b"\x00model\x00" + (model or b""))
    update_with_corpus(digest, source_key, (train.src, train.tgt))
    return digest.hexdigest()[:20]


def _build(folder: Path, train: ParallelCorpus, tokenizer: Tokenizer, cfg: DataConfig) -> None:
    """Encode into a temporary folder beside `folder`, then rename it into place (atomic on one file system)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    log.info("train: encoding %d pairs into the cache %s", len(train), folder)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        encoded, dropped = _encode(train, tokenizer, cfg)
        encoded.save(tmp)
        meta = {"version": FORMAT_VERSION, "pairs": len(encoded), "read": len(train), "dropped": dropped}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        for path in tmp.iterdir():  # durable before the rename makes them visible
            with path.open("rb") as f:
                os.fsync(f.fileno())
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same cache first: use its files
            if not (folder / "meta.json").is_file():
                raise
            log.info("train: another process built %s first; using it", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _encode(train: ParallelCorpus, tokenizer: Tokenizer, cfg: DataConfig) -> tuple[EncodedCorpus, dict[str, int]]:
    """Encode chunk by chunk, keep the pairs the length filter lets through, and flatten them."""
    src_parts: list[np.ndarray] = []
    tgt_parts: list[np.ndarray] = []
    src_lengths: list[np.ndarray] = []
    tgt_lengths: list[np.ndarray] = []
    dropped = {"too_long": 0, "bad_ratio": 0}
    for start in range(0, len(train), ENCODE_CHUNK):
        src_ids = tokenizer.encode_src(train.src[start : start + ENCODE_CHUNK])
        tgt_ids = tokenizer.encode_tgt(train.tgt[start : start + ENCODE_CHUNK])
        kept, counts = length_filter(
            [len(s) for s in src_ids], [len(t) for t in tgt_ids], cfg.max_length, cfg.max_length_ratio
        )
        for reason, count in counts.items():
            dropped[reason] += count
        for ids, parts, lengths in ((src_ids, src_parts, src_lengths), (tgt_ids, tgt_parts, tgt_lengths)):
            flat, row_lengths = _flatten([ids[i] for i in kept])
            parts.append(flat)
            lengths.append(row_lengths)
    if not src_parts:
        raise CorpusError("the training split is empty")
    corpus = EncodedCorpus(
        np.concatenate(src_parts), _offsets(src_lengths), np.concatenate(tgt_parts), _offsets(tgt_lengths)
    )
    return corpus, dropped


def _log_filter(pairs: int, dropped: dict[str, int], cfg: DataConfig) -> None:
    log.info(
        "train: %d pairs after length filtering (dropped %d over data.max_length=%d, %d over data.max_length_ratio=%g)",
        *(pairs, dropped.get("too_long", 0), cfg.max_length, dropped.get("bad_ratio", 0), cfg.max_length_ratio),
    )
    if not pairs:
        raise CorpusError(
            "no training pairs left after length filtering; raise data.max_length or data.max_length_ratio"
        )
