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
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.config import Config
from seq2seq.corpus import ParallelCorpus, length_filter, load_corpus
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, build_tokenizer

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train_src: list[list[int]]  # encoded training sources, length-filtered
    train_tgt: list[list[int]]
    valid: ParallelCorpus  # text
    test: ParallelCorpus


def prepare_data(config: Config, tokenizer: Tokenizer | None = None) -> PreparedData:
    """Load and clean the corpus, train/reuse SentencePiece (unless given one), encode and length-filter."""
    splits = load_corpus(config.data)
    train = splits["train"]
    if tokenizer is None:
        tokenizer = build_tokenizer(train.src, train.tgt, config.tokenizer)
    src_ids, tgt_ids = tokenizer.encode_src(train.src), tokenizer.encode_tgt(train.tgt)
    kept, dropped = length_filter(
        [len(s) for s in src_ids], [len(t) for t in tgt_ids], config.data.max_length, config.data.max_length_ratio
    )
    log.info(
        "train: %d pairs after length filtering (dropped %d over data.max_length=%d, %d over data.max_length_ratio=%g)",
        len(kept),
        dropped.get("too_long", 0),
        config.data.max_length,
        dropped.get("bad_ratio", 0),
        config.data.max_length_ratio,
    )
    if not kept:
        raise ValueError(
            "no training pairs left after length filtering; raise data.max_length or data.max_length_ratio"
        )
    return PreparedData(
        tokenizer, [src_ids[i] for i in kept], [tgt_ids[i] for i in kept], splits["valid"], splits["test"]
    )


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
    """Pad a list of id sequences into a `Batch`; `tgt=None` for decoding-only batches."""
    src_rows = [list(s) + [EOS_ID] for s in src]
    src_t, src_len = _pad(src_rows)
    tgt_in = tgt_out = None
    if tgt is not None:
        tgt_in, _ = _pad([[BOS_ID, *t] for t in tgt])
        tgt_out, _ = _pad([[*t, EOS_ID] for t in tgt])
    return Batch(src_t, src_len, tgt_in, tgt_out, list(indices) if indices is not None else list(range(len(src))))


def _pad(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    out = torch.full((len(rows), int(lengths.max())), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out, lengths


def token_batches(
    src_lengths: Sequence[int], tgt_lengths: Sequence[int], batch_tokens: int, rng: random.Random | None = None
) -> list[list[int]]:
    """Group sentence indices into batches of at most `batch_tokens` (padded) tokens.

    Sentences are sorted by length (ties broken at random when `rng` is given),
    cut into batches while `rows * longest <= batch_tokens`, and the batch order
    is shuffled with `rng`. Each sentence is counted with +1 for its EOS/BOS.
    """
    order = list(range(len(src_lengths)))
    if rng is not None:
        rng.shuffle(order)  # random tie-breaking: a stable sort keeps this order within equal lengths
    order.sort(key=lambda i: (src_lengths[i], tgt_lengths[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        length = max(src_lengths[i], tgt_lengths[i]) + 1
        if current and (len(current) + 1) * max(longest, length) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, length)
    if current:
        batches.append(current)
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
