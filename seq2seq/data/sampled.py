"""The training set re-encoded with a sampled segmentation at every epoch, for subword regularization;
`EpochPairs` gives the trainer each epoch's pairs (the cached ones, or that epoch's sampled segmentation).

With `tokenizer.sampling_alpha` > 0 the kept pairs of the encoded cache (`positions.npy`, see
`seq2seq.data.encoded`) are read again from the training text at every epoch and encoded with a segmentation
sampled by `seq2seq.data.sampling`: `sampled_training_set`, in memory, by the same worker processes as the
cache (`encoded.encoded_chunks`). The cache still decides which pairs train (the deterministic segmentation
and the length filter); a sampled segmentation may be longer than `data.max_length` and is not truncated.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from seq2seq.config import Config, ConfigError, TokenizerConfig
from seq2seq.data.combined import sampled_rows, training_corpora
from seq2seq.data.corpus import CorpusError, PairChunk, PairSource
from seq2seq.data.encoded import EncodedChunk, EncodedCorpus, encoded_chunks, offsets, worker_count
from seq2seq.data.sampling import SubwordSampler, Uniforms
from seq2seq.data.tokenizer import Tokenizer, flatten, prepend

if TYPE_CHECKING:  # for annotations only: no import at run time
    from seq2seq.data.prepare import PreparedData

log = logging.getLogger(__name__)

SAMPLING_CHUNK_PAIRS = 10_000  # raw pairs per task of `sampled_training_set` (and per seed): several for Multi30k


@dataclass
class SamplingTask:
    """Pairs to encode with a sampled segmentation, and the sampler's seeds for their two sides."""

    chunk: PairChunk
    seeds: tuple[int, int]  # (source, target)


class SamplingEncoder:
    """Encode chunks of pairs with sampled segmentations (`seq2seq.data.sampling`); nothing is filtered."""

    def __init__(self, tokenizer: Tokenizer, model_type: str, alpha: float, nbest_size: int) -> None:
        self.src = SubwordSampler(tokenizer.src, model_type, alpha, nbest_size)
        self.tgt = self.src if tokenizer.joint else SubwordSampler(tokenizer.tgt, model_type, alpha, nbest_size)
        self.tags = tokenizer.tags

    def __call__(self, task: SamplingTask) -> EncodedChunk:
        chunk, (src_seed, tgt_seed) = task.chunk, task.seeds
        src, src_lengths = flatten(self.src.sample(chunk.src, Uniforms(np.random.default_rng(src_seed))))
        src, src_lengths = prepend(src, src_lengths, [self.tags[tag] for tag in chunk.tags])  # tags are never sampled
        tgt, tgt_lengths = flatten(self.tgt.sample(chunk.tgt, Uniforms(np.random.default_rng(tgt_seed))))
        return EncodedChunk(src, src_lengths, tgt, tgt_lengths, len(chunk), {}, chunk.positions, chunk.corpus)


def sampled_training_set(
    corpus: PairSource,
    positions: np.ndarray,
    tokenizer: Tokenizer,
    cfg: TokenizerConfig,
    seed: int,
    epoch: int,
    workers: int,
) -> EncodedCorpus:
    """The training pairs of epoch `epoch` with a sampled segmentation (subword regularization), in memory.

    The pairs are those at the raw `positions` (the encoded cache's `positions`: the deterministic
    segmentation and the length filter chose them), in order, so pair i here is pair i of the cache.
    Every chunk of the corpus is sampled with seeds drawn from (seed, epoch, the chunk's number): the
    arrays are a function of those alone, whatever the number of `workers` (0: encode in this process).
    """
    wanted = np.zeros(corpus.raw_pairs, dtype=bool)  # (raw_pairs,)
    if len(positions) and (positions[0] < 0 or positions[-1] >= corpus.raw_pairs):
        raise _changed_corpus_error()
    wanted[positions] = True
    tasks = (
        SamplingTask(_select(chunk, wanted[chunk.positions]), _sampling_seeds(seed, epoch, number))
        for number, chunk in enumerate(corpus.chunks(SAMPLING_CHUNK_PAIRS))
    )
    settings = (cfg.type, cfg.sampling_alpha, cfg.nbest_size)
    with encoded_chunks(tasks, SamplingEncoder, settings, tokenizer, workers) as results:
        parts = list(results)
    sampled = EncodedCorpus(
        _joined([p.src for p in parts], np.int32),
        offsets([p.src_lengths for p in parts]),
        _joined([p.tgt for p in parts], np.int32),
        offsets([p.tgt_lengths for p in parts]),
        _joined([p.positions for p in parts], np.int64),
    )
    if not np.array_equal(sampled.positions, positions):
        raise _changed_corpus_error()
    return sampled


def _select(chunk: PairChunk, keep: np.ndarray) -> PairChunk:
    """The pairs of `chunk` where `keep` ((pairs,) bool) is set."""
    rows = np.flatnonzero(keep).tolist()
    return PairChunk(
        [chunk.src[i] for i in rows], [chunk.tgt[i] for i in rows], chunk.positions[keep], chunk.tags, chunk.corpus
    )


def _sampling_seeds(seed: int, epoch: int, chunk: int) -> tuple[int, int]:
    """Two seeds (source side, target side) for a chunk's draws: a function of (seed, epoch, chunk) only."""
    digest = hashlib.sha256(f"subword sampling: seed {seed}, epoch {epoch}, chunk {chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:16], "little")


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


def _changed_corpus_error() -> CorpusError:
    return CorpusError(
        "the training split no longer holds the pairs its encoded cache was built from (did a file change "
        "during the run?); start the run again to rebuild the cache"
    )


class EpochPairs:
    """The training pairs of each epoch: the cached arrays, or with subword regularization
    (`tokenizer.sampling_alpha` > 0) the epoch's sampled segmentation of them, a function of the seed and
    the epoch only (so that a resumed run rebuilds it), built once per epoch. With corpus weights other
    than 1 (`data.weight`, `data.corpora`), an epoch holds weight x kept pairs of each corpus
    (`combined.sampled_rows`), again a function of the seed and the epoch only."""

    def __init__(self, data: PreparedData, config: Config) -> None:
        self.data, self.config = data, config
        self.sampling = config.tokenizer.sampling_alpha > 0
        if self.sampling and (data.train_source is None or data.train.positions is None):
            raise ConfigError("tokenizer.sampling_alpha > 0 needs the training text and the kept pairs' positions")
        self.cached_lengths = data.train.src_lengths, data.train.tgt_lengths
        self.sampled: tuple[int, EncodedCorpus] | None = None  # (epoch, its pairs) with sampling on
        self.weights = [corpus.weight for corpus in training_corpora(config.data)]
        self.parts = data.train.parts or (len(data.train),)
        if len(self.parts) != len(self.weights):
            raise CorpusError(
                f"the encoded training set holds {len(self.parts)} corpora, the config {len(self.weights)}"
            )
        self.rows: tuple[int, np.ndarray | None] | None = None  # (epoch, its rows) with weights

    def pairs(self, epoch: int) -> EncodedCorpus | WeightedPairs:
        """The epoch's pairs: `.pairs(indices)` gives the ids of the rows `indices` of `lengths(epoch)`."""
        rows = self.weighted_rows(epoch)
        pairs = self.segmented(epoch)
        return pairs if rows is None else WeightedPairs(pairs, rows)

    def lengths(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(source, target) token counts of the epoch's pairs: (pairs,) each."""
        if not self.sampling:
            src, tgt = self.cached_lengths
        else:
            train = self.segmented(epoch)
            src, tgt = train.src_lengths, train.tgt_lengths
        rows = self.weighted_rows(epoch)
        return (src, tgt) if rows is None else (src[rows], tgt[rows])

    def segmented(self, epoch: int) -> EncodedCorpus:
        """Every kept pair once: the cached segmentation, or the epoch's sampled one."""
        if not self.sampling:
            return self.data.train
        if self.sampled is None or self.sampled[0] != epoch:
            self.sampled = None  # free the previous epoch's arrays first
            self.sampled = (epoch, self.sample(epoch))
        return self.sampled[1]

    def weighted_rows(self, epoch: int) -> np.ndarray | None:
        if self.rows is None or self.rows[0] != epoch:
            self.rows = (epoch, sampled_rows(self.parts, self.weights, self.config.train.seed, epoch))
        return self.rows[1]

    def sample(self, epoch: int) -> EncodedCorpus:
        """Re-encode the training pairs with a sampled segmentation and log it."""
        started, tok, cached = time.perf_counter(), self.config.tokenizer, self.data.train
        assert self.data.train_source is not None and cached.positions is not None
        train = sampled_training_set(
            self.data.train_source,
            cached.positions,
            self.data.tokenizer,
            tok,
            self.config.train.seed,
            epoch,
            worker_count(self.config.data),
        )
        tokens = len(train.src), len(train.tgt)
        growth = [100 * (n / max(len(ids), 1) - 1) for n, ids in zip(tokens, (cached.src, cached.tgt))]
        log.info(
            "train: epoch %d: sampled segmentation (tokenizer.sampling_alpha=%g), %d source / %d target tokens "
            "(%+.1f%% / %+.1f%% over the deterministic one) in %.1fs",
            *(epoch, tok.sampling_alpha, *tokens, *growth, time.perf_counter() - started),
        )
        return train


@dataclass
class WeightedPairs:
    """An epoch's pairs by corpus weight: row i is pair `rows[i]` of `pairs`."""

    corpus: EncodedCorpus
    rows: np.ndarray  # (epoch pairs,) int64

    def __len__(self) -> int:
        return len(self.rows)

    def pairs(self, indices: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return self.corpus.pairs(self.rows[np.asarray(indices, dtype=np.int64)].tolist())
