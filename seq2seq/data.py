"""From token-id sequences to padded batches.

`prepare_data` turns a config into encoded, length-filtered training pairs. Two ideas live here
and nowhere else:
- the teacher-forcing shift: the decoder reads `tgt_in = BOS y1 .. yn` and is
  trained to emit `tgt_out = y1 .. yn EOS`;
- length bucketing: sentences of similar length share a batch, and a batch holds
  as many sentences as fit a token budget, so little compute goes to padding.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from seq2seq.config import Config
from seq2seq.corpus import ParallelCorpus, fingerprint, load_corpus
from seq2seq.encoded import EncodedCorpus, cached_training_set, encode_training_set
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, build_tokenizer, cached_tokenizer


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: EncodedCorpus  # encoded, length-filtered training pairs (memory-mapped from the cache)
    valid: ParallelCorpus  # text
    test: ParallelCorpus


def prepare_data(config: Config, tokenizer: Tokenizer | None = None) -> PreparedData:
    """Load and clean the corpus, train/reuse SentencePiece (unless given one), encode and length-filter.

    The encoded training set is built once per corpus and tokenizer (`seq2seq.encoded`), then reused.
    For local files the caches are named by a fingerprint of the files' bytes, so that when both the
    tokenizer and the encoded pairs are cached, the training text is not read at all.
    """
    source_key = fingerprint(config.data)
    if source_key is not None:
        known = tokenizer or cached_tokenizer(source_key, config.tokenizer)
        encoded = cached_training_set(source_key, known, config.data) if known is not None else None
        if known is not None and encoded is not None:
            splits = load_corpus(config.data, ("valid", "test"))
            return PreparedData(known, encoded, splits["valid"], splits["test"])
    splits = load_corpus(config.data)
    train = splits["train"]
    if tokenizer is None:
        tokenizer = build_tokenizer(train.src, train.tgt, config.tokenizer, source_key)
    encoded = encode_training_set(train, tokenizer, config.data, source_key)
    return PreparedData(tokenizer, encoded, splits["valid"], splits["test"])


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
) -> list[list[int]]:
    """Group sentence indices into batches of at most `batch_tokens` (padded) tokens.

    Sentences are sorted by length (ties broken at random when `rng` is given),
    cut into batches while `rows * longest <= batch_tokens`, and the batch order
    is shuffled with `rng`. Each sentence is counted with +1 for its EOS/BOS.
    """
    src, tgt = np.asarray(src_lengths, dtype=np.int64), np.asarray(tgt_lengths, dtype=np.int64)
    order = list(range(len(src)))
    if rng is not None:
        rng.shuffle(order)  # random tie-breaking: the stable sort below keeps this order within equal lengths
    ordered = np.asarray(order, dtype=np.int64)
    ordered = ordered[np.lexsort((tgt[ordered], src[ordered]))]  # by source, then target length; stable
    needs = (np.maximum(src, tgt) + 1)[ordered].tolist()
    indices = ordered.tolist()
    batches: list[list[int]] = []
    first, longest = 0, 0
    for position, length in enumerate(needs):
        if position > first and (position - first + 1) * max(longest, length) > batch_tokens:
            batches.append(indices[first:position])
            first, longest = position, 0
        longest = max(longest, length)
    if indices:
        batches.append(indices[first:])
    if rng is not None:
        rng.shuffle(batches)
    return batches


def epoch_batches(
    src_lengths: Sequence[int], tgt_lengths: Sequence[int], batch_tokens: int, seed: int, epoch: int
) -> list[list[int]]:
    """One epoch's shuffled, length-bucketed batches (lists of pair indices), a function of seed and epoch only."""
    return token_batches(src_lengths, tgt_lengths, batch_tokens, random.Random(seed * 1_000_003 + epoch))


def sentence_batches(src_lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of `batch_size` sentences of similar source length, for decoding (order restored later)."""
    order = sorted(range(len(src_lengths)), key=lambda i: src_lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
