"""Greedy and beam search in numpy over a step function: the same rules as `seq2seq.decoding.search`.

`step(prev (rows,) int64, rows_to_keep) -> log_probs (rows, vocab)` advances the decoder state the caller
keeps; `reorder(rows)` moves it along with the hypotheses (beam search) or drops finished rows. A hypothesis
ends at EOS or at its sentence's max length; beam search ranks ended hypotheses by log-probability / the GNMT
length penalty ((5 + length) / 6) ** alpha (plus, optionally, GNMT's coverage penalty), and a sentence is done
once `beam_size` hypotheses have ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from seq2seq.vocab import BOS_ID, EOS_ID

StepFn = Callable[[np.ndarray], np.ndarray]  # prev (rows,) -> log_probs (rows, vocab)
ReorderFn = Callable[[np.ndarray], None]  # rows (new rows,) of the current ones, in their new order
AttentionFn = Callable[[], np.ndarray]  # the last step's attention weights (rows, src_len)


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, without BOS and EOS
    log_prob: float  # summed token log-probabilities (EOS included when it was produced)
    score: float  # log_prob / length penalty: what beam search ranks by


def length_penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


def greedy_search(step: StepFn, reorder: ReorderFn, max_lengths: np.ndarray) -> list[Hypothesis]:
    """The most probable token at every step; a row leaves the batch at EOS or its max length."""
    batch = len(max_lengths)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    totals = np.zeros(batch)
    live = np.arange(batch)
    prev = np.full(batch, BOS_ID, dtype=np.int64)
    for t in range(int(max_lengths.max())):
        log_probs = step(prev)  # (live, vocab)
        prev = log_probs.argmax(axis=1)
        best = log_probs[np.arange(len(live)), prev]
        for row, sentence in enumerate(live):
            tokens[sentence].append(int(prev[row]))
            totals[sentence] += float(best[row])
        finished = (prev == EOS_ID) | (t + 1 >= max_lengths[live])
        if finished.all():
            break
        if finished.any():
            keep = np.flatnonzero(~finished)
            reorder(keep)
            live, prev = live[keep], prev[keep]
    return [
        Hypothesis([i for i in row if i != EOS_ID], float(total), float(total)) for row, total in zip(tokens, totals)
    ]


def beam_search(
    step: StepFn,
    reorder: ReorderFn,
    max_lengths: np.ndarray,
    beam_size: int,
    alpha: float = 0.0,
    nbest: int = 1,
    coverage_penalty: float = 0.0,
    attention: AttentionFn | None = None,
    src_lengths: np.ndarray | None = None,
) -> list[list[Hypothesis]]:
    """Beam search; the caller's state holds `beam_size` rows per sentence (sentence-major), all equal at first.
    Returns the `nbest` best hypotheses per sentence, best first.

    With `coverage_penalty` beta > 0 (GNMT), an ended hypothesis' score gains beta * sum over its source's
    words of log(min(attention received, 1)), as in `seq2seq.decoding.search`: `attention()` gives the last
    step's weights (rows, src_len) and `src_lengths` (batch,) the source lengths with EOS."""
    batch, k = len(max_lengths), beam_size
    penalty = None
    if coverage_penalty > 0:
        if attention is None or src_lengths is None:
            raise ValueError("a coverage penalty needs the attention weights and the source lengths")
        penalty = _Coverage(coverage_penalty, attention, src_lengths)
    scores = np.zeros((batch, k))
    scores[:, 1:] = -np.inf  # the beams start equal: only the first one expands
    history = np.full((batch * k, 0), 0, dtype=np.int64)  # (live * beam, t) tokens so far
    prev = np.full(batch * k, BOS_ID, dtype=np.int64)
    live = list(range(batch))
    ended: list[list[Hypothesis]] = [[] for _ in range(batch)]
    for t in range(int(max_lengths.max())):
        n = len(live)
        log_probs = step(prev)  # (live * beam, vocab)
        if penalty is not None:
            penalty.add()
        vocab = log_probs.shape[1]
        candidates = (scores[:, :, None] + log_probs.reshape(n, k, vocab)).reshape(n, -1)  # (live, beam * vocab)
        order = top_indices(candidates, 2 * k)  # (live, 2 * beam) best first
        top_scores = np.take_along_axis(candidates, order, axis=1)
        top_beam, top_token = order // vocab, order % vocab
        is_eos = top_token == EOS_ID
        for i, j in zip(*np.nonzero(is_eos[:, :k])):
            row = i * k + top_beam[i, j]
            bonus = penalty.score(row, live[i]) if penalty is not None else 0.0
            _finish(ended[live[i]], history[row].tolist(), top_scores[i, j], alpha, True, bonus)
        alive = np.argsort(is_eos, axis=1, kind="stable")[:, :k]  # the best k that do not end in EOS
        scores = np.take_along_axis(top_scores, alive, axis=1)
        beams = (np.arange(n)[:, None] * k + np.take_along_axis(top_beam, alive, axis=1)).reshape(-1)
        prev = np.take_along_axis(top_token, alive, axis=1).reshape(-1)
        history = np.concatenate([history[beams], prev[:, None]], axis=1)
        if penalty is not None:
            penalty.keep(beams)
        going_on = []
        for i, b in enumerate(live):
            if t + 1 >= max_lengths[b]:
                for j in range(k):
                    bonus = penalty.score(i * k + j, b) if penalty is not None else 0.0
                    _finish(ended[b], history[i * k + j].tolist(), scores[i, j], alpha, False, bonus)
            elif len(ended[b]) < k:
                going_on.append(i)
        if not going_on:
            break
        rows = beams
        if len(going_on) < n:
            keep = np.array(going_on)
            kept_rows = (keep[:, None] * k + np.arange(k)).reshape(-1)
            rows, history, prev, scores = beams[kept_rows], history[kept_rows], prev[kept_rows], scores[keep]
            live = [live[i] for i in going_on]
            if penalty is not None:
                penalty.keep(kept_rows)
        reorder(rows)
    return [sorted(hyps, key=lambda h: h.score, reverse=True)[:nbest] for hyps in ended]


def top_indices(scores: np.ndarray, count: int) -> np.ndarray:
    """(rows, count) column indices of each row's `count` highest scores, highest first (ties: lower index
    first): a partition, then a sort of the few it keeps, not a sort of the whole row."""
    count = min(count, scores.shape[1])
    part = np.argpartition(-scores, count - 1, axis=1)[:, :count]  # (rows, count), unordered
    chosen = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -chosen), axis=1)  # by score descending, then by column
    return np.take_along_axis(part, order, axis=1)


class _Coverage:
    """The attention each row's source words received so far, (rows, src_len) in float32 as in PyTorch."""

    FLOOR = 1e-6  # a word never attended to counts as log(1e-6)

    def __init__(self, beta: float, attention: AttentionFn, src_lengths: np.ndarray) -> None:
        self.beta, self.attention, self.src_lengths = beta, attention, src_lengths
        self.received: np.ndarray | None = None

    def add(self) -> None:
        weights = self.attention().astype(np.float32)
        self.received = weights if self.received is None else self.received + weights

    def keep(self, rows: np.ndarray) -> None:
        assert self.received is not None
        self.received = self.received[rows]

    def score(self, row: int, sentence: int) -> float:
        assert self.received is not None
        received = np.clip(self.received[row, : self.src_lengths[sentence]], self.FLOOR, 1.0)
        return self.beta * float(np.log(received).sum(dtype=np.float32))


def _finish(
    ended: list[Hypothesis], tokens: list[int], log_prob: float, alpha: float, eos_counted: bool, bonus: float = 0.0
) -> None:
    if log_prob == -np.inf:
        return
    tokens = [i for i in tokens if i != EOS_ID]
    length = len(tokens) + (1 if eos_counted else 0)
    ended.append(Hypothesis(tokens, float(log_prob), float(log_prob) / length_penalty(length, alpha) + bonus))
