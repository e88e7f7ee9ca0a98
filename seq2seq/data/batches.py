"""From token-id sequences to padded batches.

Two ideas live here and nowhere else:
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

from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID


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
