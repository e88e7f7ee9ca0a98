"""A config's data, ready to train on: `prepare_data` reads the corpus, trains (or reuses) the tokenizer,
and encodes and length-filters the training pairs; `EpochPairs` gives each epoch's pairs (with subword
sampling, their sampled segmentation). Batching them is `seq2seq.data.batches`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from seq2seq.config import Config, ConfigError
from seq2seq.data.corpus import PairSource, ParallelCorpus, fingerprint, open_splits
from seq2seq.data.encoded import (
    EncodedCorpus,
    cached_training_set,
    encode_training_set,
    sampled_training_set,
    worker_count,
)
from seq2seq.data.tokenizer import Tokenizer, build_tokenizer, cached_tokenizer

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: EncodedCorpus  # encoded, length-filtered training pairs (memory-mapped from the cache), with positions
    valid: ParallelCorpus  # text
    test: ParallelCorpus
    train_source: PairSource | None = None  # the training text, to re-encode at each epoch (subword sampling)


def prepare_data(config: Config, tokenizer: Tokenizer | None = None) -> PreparedData:
    """Read and clean the corpus, train/reuse SentencePiece (unless given one), encode and length-filter.

    The training split is streamed, never held whole: SentencePiece trains on a sample of it, and the
    encoded pairs are built once per corpus and tokenizer (`seq2seq.data.encoded`), then memory-mapped.
    For local files the caches are named by a fingerprint of the files' bytes, so that when both the
    tokenizer and the encoded pairs are cached, the training text is not read at all; with subword
    sampling (`tokenizer.sampling_alpha` > 0) its reader is still opened (a scan of the files, no
    encoding), for the trainer to re-encode it at every epoch.
    """
    source_key = fingerprint(config.data)
    if source_key is not None:
        known = tokenizer or cached_tokenizer(source_key, config.tokenizer)
        encoded = cached_training_set(source_key, known, config.data) if known is not None else None
        if known is not None and encoded is not None:
            sampling = config.tokenizer.sampling_alpha > 0
            splits = open_splits(config.data, ("train", "valid", "test") if sampling else ("valid", "test"), source_key)
            valid, test = splits["valid"].read(), splits["test"].read()
            return PreparedData(known, encoded, valid, test, splits.get("train"))
        tokenizer = known
    splits = open_splits(config.data, key=source_key)
    train = splits["train"]
    if tokenizer is None:
        tokenizer = build_tokenizer(train, config.tokenizer)
    encoded = encode_training_set(train, tokenizer, config.data)
    return PreparedData(tokenizer, encoded, splits["valid"].read(), splits["test"].read(), train)


class EpochPairs:
    """The training pairs of each epoch: the cached arrays, or with subword regularization
    (`tokenizer.sampling_alpha` > 0) the epoch's sampled segmentation of them, a function of the seed and
    the epoch only (so that a resumed run rebuilds it), built once per epoch."""

    def __init__(self, data: PreparedData, config: Config) -> None:
        self.data, self.config = data, config
        self.sampling = config.tokenizer.sampling_alpha > 0
        if self.sampling and (data.train_source is None or data.train.positions is None):
            raise ConfigError("tokenizer.sampling_alpha > 0 needs the training text and the kept pairs' positions")
        self.cached_lengths = data.train.src_lengths, data.train.tgt_lengths
        self.sampled: tuple[int, EncodedCorpus] | None = None  # (epoch, its pairs) with sampling on

    def pairs(self, epoch: int) -> EncodedCorpus:
        if not self.sampling:
            return self.data.train
        if self.sampled is None or self.sampled[0] != epoch:
            self.sampled = None  # free the previous epoch's arrays first
            self.sampled = (epoch, self.sample(epoch))
        return self.sampled[1]

    def lengths(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(source, target) token counts of the epoch's pairs: (pairs,) each."""
        if not self.sampling:
            return self.cached_lengths
        train = self.pairs(epoch)
        return train.src_lengths, train.tgt_lengths

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
