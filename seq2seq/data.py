"""From token-id sequences to padded batches.

`prepare_data` turns a config into encoded, length-filtered training pairs. Two ideas live here
and nowhere else:
- the teacher-forcing shift: the decoder reads `tgt_in = BOS y1 .. yn` and is
  trained to emit `tgt_out = y1 .. yn EOS`;
- length bucketing: sentences of similar length share a batch, and a batch holds
  as many sentences as fit a token budget, so little compute goes to padding.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from seq2seq.config import Config, ConfigError
from seq2seq.corpus import PairSource, ParallelCorpus, fingerprint, open_splits
from seq2seq.encoded import EncodedCorpus, cached_training_set, encode_training_set, sampled_training_set, worker_count
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, build_tokenizer, cached_tokenizer

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
    encoded pairs are built once per corpus and tokenizer (`seq2seq.encoded`), then memory-mapped.
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


@dataclass
class Batch:
    src: Tensor  # (batch, src_len) source ids + EOS, PAD-padded
    src_lengths: Tensor  # (batch,) true lengths, EOS included (kept on the CPU for packing)
    tgt_in: Tensor | None  # (batch, tgt_len) BOS y1 .. yn: what the decoder is fed under teacher forcing
    tgt_out: Tensor | None  # (batch, tgt_len) y1 .. yn EOS: what it must predict
    indices: list[int]  # each row's position in the corpus, to restore the order after decoding

    @property
    def size(self) -> int:
        return self.src.size(0)

    @property
    def num_tgt_tokens(self) -> int:
        """Target tokens to predict (EOS included, padding excluded)."""
        assert self.tgt_out is not None
        return int((self.tgt_out != PAD_ID).sum())

    def to(self, device: torch.device) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.src), self.src_lengths, move(self.tgt_in), move(self.tgt_out), self.indices)


def make_batch(
    src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None = None, indices: Sequence[int] | None = None
) -> Batch:
    """Pad id sequences (lists or arrays) into a `Batch`; `tgt=None` for decoding-only batches."""
    src_t, src_len = _pad(src, bos=False, eos=True)
    tgt_in = tgt_out = None
    if tgt is not None:
        tgt_in, _ = _pad(tgt, bos=True, eos=False)
        tgt_out, _ = _pad(tgt, bos=False, eos=True)
    return Batch(src_t, src_len, tgt_in, tgt_out, list(indices) if indices is not None else list(range(len(src))))


def _pad(rows: Sequence[Sequence[int]], bos: bool, eos: bool) -> tuple[Tensor, Tensor]:
    """(rows, longest) int64 ids with BOS before and/or EOS after each row, PAD after; and the lengths."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64) + int(bos) + int(eos)
    out = np.full((len(rows), int(lengths.max())), PAD_ID, dtype=np.int64)
    start = int(bos)
    for i, row in enumerate(rows):
        end = start + len(row)
        out[i, start:end] = row
        if eos:
            out[i, end] = EOS_ID
    if bos:
        out[:, 0] = BOS_ID
    return torch.from_numpy(out), torch.from_numpy(lengths)


def token_batches(
    src_lengths: Sequence[int] | np.ndarray,
    tgt_lengths: Sequence[int] | np.ndarray,
    batch_tokens: int,
    rng: random.Random | None = None,
) -> list[np.ndarray]:
    """Group sentence indices into batches of at most `batch_tokens` (padded) tokens; (rows,) int64 arrays.

    Sentences are sorted by length (ties broken at random when `rng` is given),
    cut into batches while `rows * longest <= batch_tokens`, and the batch order
    is shuffled with `rng`. Each sentence is counted with +1 for its EOS/BOS.
    """
    src, tgt = np.asarray(src_lengths, dtype=np.int64), np.asarray(tgt_lengths, dtype=np.int64)
    if rng is None:
        ordered = np.arange(len(src), dtype=np.int64)
    else:
        order = list(range(len(src)))
        rng.shuffle(order)  # random tie-breaking: the stable sort below keeps this order within equal lengths
        ordered = np.asarray(order, dtype=np.int64)
    ordered = ordered[_stable_length_order(src[ordered], tgt[ordered])]  # by source, then target length
    needs = (np.maximum(src, tgt) + 1)[ordered]  # (sentences,) padded tokens each one costs, in batch order
    batches = np.split(ordered, _batch_starts(needs, batch_tokens)[1:])
    if rng is not None:
        rng.shuffle(batches)
    return batches if len(ordered) else []


def _stable_length_order(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """The stable order by (source, target) length: one radix sort of a 16-bit key when lengths allow."""
    if len(src) and max(int(src.max()), int(tgt.max())) < 256:
        return np.argsort((src << 8 | tgt).astype(np.uint16), kind="stable")
    return np.lexsort((tgt, src))


def _batch_starts(needs: np.ndarray, batch_tokens: int) -> list[int]:
    """Where each batch starts: a batch grows while (rows + 1) * longest fits, and has at least one row.

    A batch starting at `first` cannot hold more than batch_tokens // needs[first] + 1 rows before it
    overflows, so each cut is found in a window of that size with a running maximum.
    """
    starts, first, n = [], 0, len(needs)
    while first < n:
        starts.append(first)
        window = needs[first : first + batch_tokens // int(needs[first]) + 2]  # (w,)
        rows = np.arange(1, len(window) + 1)
        over = np.flatnonzero((rows * np.maximum.accumulate(window) > batch_tokens)[1:])  # the first row never cuts
        first += int(over[0]) + 1 if len(over) else len(window)
    return starts


def epoch_batches(
    src_lengths: Sequence[int] | np.ndarray,
    tgt_lengths: Sequence[int] | np.ndarray,
    batch_tokens: int,
    seed: int,
    epoch: int,
) -> list[np.ndarray]:
    """One epoch's shuffled, length-bucketed batches (arrays of pair indices), a function of seed and epoch only."""
    return token_batches(src_lengths, tgt_lengths, batch_tokens, random.Random(seed * 1_000_003 + epoch))


def sentence_batches(src_lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of `batch_size` sentences of similar source length, for decoding (order restored later)."""
    order = sorted(range(len(src_lengths)), key=lambda i: src_lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
