"""Greedy search, sampling and beam search over one shared step function.

Both searches take `step(prev_tokens, state) -> (log_probs, state)`; the model provides that step
(`seq2seq.decoding.model_search.model_step`, around `Seq2Seq.decode_step`), and a test can provide a
hand-made one. The state
answers two calls: `index_select(rows)` keeps only some rows (a sentence that is done leaves the
batch, so no time is spent on it), and `reorder(rows)` moves rows within each sentence's beam
(beam search only; whatever a sentence's beams share, like the encoder memory, can stay put).
Greedy is the beam of one: `beam_search(beam_size=1)` returns exactly what `greedy_search` does.
Sampling is greedy search that draws each token instead of taking the most probable one: one loop,
`one_token_at_a_time`, serves both, with `most_probable` or a `seq2seq.decoding.sampling.Sampler`'s pick.
Forced decoding (`forced_decode`, for scoring and attention) runs the same step on given outputs, and
constrained beam search (`seq2seq.decoding.steering`) too. Decoding a batch with a model (`translate_batch`)
is `seq2seq.decoding.model_search`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

from seq2seq.vocab import BOS_ID, EOS_ID

S = TypeVar("S")
StepFn = Callable[[Tensor, S], tuple[Tensor, S]]


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, without BOS and EOS
    log_prob: float  # sum of the token log-probabilities (EOS included when it was produced)
    score: float  # log_prob / length penalty: what beam search ranks by
    attention: Tensor | None = None  # greedy with keep_attention: (output steps, EOS included, src_len) on the CPU


@dataclass
class ForcedScore:
    """How probable the model finds a given output (forced decoding): `forced_decode`, `score_batch`."""

    token_log_probs: list[float]  # one per output token, the final EOS last
    attention: Tensor | None = None  # with keep_attention: (output tokens + EOS, src_len) on the CPU

    @property
    def log_prob(self) -> float:
        """The total log-probability of the output, EOS included."""
        return sum(self.token_log_probs)

    @property
    def length(self) -> int:
        """Output tokens, EOS included."""
        return len(self.token_log_probs)

    @property
    def average(self) -> float:
        """The log-probability per token (EOS counted)."""
        return self.log_prob / self.length


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha; alpha = 0 ranks by raw log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


# pick(log_probs (live, vocab), live (live,): their rows, output position) -> (column (live,), log-prob (live,))
PickFn = Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]


def most_probable(log_probs: Tensor, live: Tensor, position: int) -> tuple[Tensor, Tensor]:
    """Greedy search's pick: the most probable column of each row, and its log-probability."""
    best, column = log_probs.max(dim=1)
    return column, best


@torch.no_grad()
def greedy_search(
    step: StepFn,
    state: Any,
    max_lengths: Tensor,
    bos: int = BOS_ID,
    eos: int = EOS_ID,
    keep_attention: bool = False,
) -> list[Hypothesis]:
    """Pick the most probable token at every step. max_lengths: (batch,) output tokens allowed.

    With `keep_attention`, the state after each step must hold that step's attention weights in
    `state.attention` (live rows, src_len), and every hypothesis keeps its rows.
    """
    return one_token_at_a_time(step, state, max_lengths, most_probable, bos, eos, keep_attention)


def one_token_at_a_time(
    step: StepFn,
    state: Any,
    max_lengths: Tensor,
    pick: PickFn,
    bos: int = BOS_ID,
    eos: int = EOS_ID,
    keep_attention: bool = False,
) -> list[Hypothesis]:
    """One output per row, each step's token chosen by `pick` (greedy: `most_probable`; sampling: a draw).
    A row leaves the batch at its EOS or its max length. max_lengths: (rows,)."""
    batch, steps, device = max_lengths.size(0), int(max_lengths.max()), max_lengths.device
    tokens = torch.full((batch, steps), eos, dtype=torch.long, device=device)  # (batch, steps)
    log_probs = torch.zeros(batch, steps, device=device)  # (batch, steps)
    attention: Tensor | None = None  # (batch, steps, src_len) when kept
    live = torch.arange(batch, device=device)  # the sentences still being decoded
    limits = max_lengths
    prev = torch.full((batch,), bos, dtype=torch.long, device=device)
    for t in range(steps):
        step_log_probs, state = step(prev, state)  # (live, vocab), or (live, C) with a shortlist
        column, best = pick(step_log_probs, live, t)
        prev = token_ids(state, column)
        tokens[live, t], log_probs[live, t] = prev, best
        if keep_attention:
            attention = _keep_step_attention(attention, state, live, t, batch, steps)
        finished = (prev == eos) | (t + 1 >= limits)
        if bool(finished.any()):
            if bool(finished.all()):
                break
            live, limits, prev, state = _drop_finished(finished, live, limits, prev, state)
    rows, row_log_probs = tokens[:, : t + 1].tolist(), log_probs[:, : t + 1].tolist()
    weights = attention.cpu() if attention is not None else [None] * batch
    return [
        _cut(row, lp, limit, eos, w) for row, lp, limit, w in zip(rows, row_log_probs, max_lengths.tolist(), weights)
    ]


def token_ids(state: Any, columns: Tensor) -> Tensor:
    """The target ids of columns of a step's log-probabilities: themselves, or with a shortlist (the state's
    `vocab`, (sentences, C): every live sentence's candidate ids) the ids they stand for.

    columns: (sentences, ...), one row per live sentence (greedy: (sentences,); beam: (sentences, 2*beam)).
    """
    vocab = getattr(state, "vocab", None)
    if vocab is None:
        return columns
    return vocab.gather(1, columns.reshape(vocab.size(0), -1)).view_as(columns)


def _keep_step_attention(kept: Tensor | None, state: Any, live: Tensor, t: int, batch: int, steps: int) -> Tensor:
    """Store step t's attention weights (`state.attention`, (live, src_len)) in `kept` (batch, steps, src_len)."""
    if state.attention is None:
        raise ValueError("no attention weights to keep: the model has none (model.attention=none)")
    if kept is None:
        kept = state.attention.new_zeros(batch, steps, state.attention.size(1)).float()
    kept[live, t] = state.attention.float()
    return kept


def _drop_finished(finished: Tensor, live: Tensor, limits: Tensor, prev: Tensor, state: Any) -> tuple[Any, ...]:
    """The rows that are done leave the batch (greedy and forced decoding): (live, limits, prev, state) of the rest."""
    keep = (~finished).nonzero().squeeze(1)
    return live[keep], limits[keep], prev[keep], state.index_select(keep)


def _cut(row: list[int], log_probs: list[float], limit: int, eos: int, attention: Tensor | None) -> Hypothesis:
    """A greedy row up to its EOS or its sentence's max length, whichever comes first."""
    end = min(row.index(eos) + 1 if eos in row else len(row), limit)
    total = sum(log_probs[:end])
    return Hypothesis([t for t in row[:end] if t != eos], total, total, None if attention is None else attention[:end])


@torch.no_grad()
def beam_search(
    step: StepFn,
    state: Any,
    max_lengths: Tensor,
    beam_size: int,
    alpha: float = 0.0,
    nbest: int = 1,
    bos: int = BOS_ID,
    eos: int = EOS_ID,
    coverage_penalty: float = 0.0,
    src_lengths: Tensor | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search; returns the `nbest` best hypotheses per sentence, best first.

    `state` must already hold `beam_size` rows per sentence (sentence-major: rows
    b*K .. b*K+K-1 belong to sentence b). A hypothesis ends when it emits EOS or
    reaches its sentence's max length; a sentence is done once `beam_size`
    hypotheses have ended, and they are ranked by log-probability / length penalty.
    With `coverage_penalty` beta > 0 (GNMT, Wu et al. 2016) they are ranked by that plus
    beta * sum_i log(min(attention source word i received, 1)): a hypothesis that left source words
    unattended ranks lower. It needs the step's attention (`state.attention`, (rows, src_len)) and the
    sentences' `src_lengths` (batch,) (EOS included).
    """
    batch, k = max_lengths.size(0), beam_size
    device = max_lengths.device
    scores = torch.zeros(batch, k, device=device)  # (live, beam) summed log-probs of the live hypotheses
    scores[:, 1:] = float("-inf")  # all beams start identical: let only the first one expand
    history = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)  # (live*beam, t+1)
    beam_rows = torch.arange(k, device=device)
    live = list(range(batch))  # the sentences still being decoded, in row order
    ended: list[list[Hypothesis]] = [[] for _ in range(batch)]
    limits = max_lengths.tolist()
    coverage: Tensor | None = None  # (live*beam, src_len) attention received so far, with a coverage penalty
    penalty = _CoveragePenalty(coverage_penalty, src_lengths, k) if coverage_penalty > 0 else None
    for t in range(int(max_lengths.max())):
        n = len(live)
        log_probs, state = step(history[:, -1], state)  # (live*beam, vocab), or (live*beam, C) with a shortlist
        if penalty is not None:
            coverage = penalty.add(coverage, state)
        vocab = log_probs.size(1)
        candidates = scores.unsqueeze(2) + log_probs.view(n, k, vocab)  # (live, beam, vocab)
        top_scores, top_index = candidates.view(n, -1).topk(2 * k, dim=1)  # (live, 2*beam)
        top_beam, top_token = top_index // vocab, token_ids(state, top_index % vocab)
        # Candidates ending in EOS among the best k end their hypothesis.
        is_eos = top_token == eos
        for i, j in is_eos[:, :k].nonzero().tolist():
            row = i * k + int(top_beam[i, j])
            bonus = penalty.score(coverage, row, live[i]) if penalty is not None else 0.0
            _finish(ended[live[i]], history[row, 1:].tolist(), float(top_scores[i, j]), alpha, True, bonus)
        # The best k candidates that do not end in EOS live on (there are always k: at most one EOS per beam).
        alive = torch.argsort(is_eos.to(torch.int8), dim=1, stable=True)[:, :k]  # (live, beam) positions
        scores = top_scores.gather(1, alive)
        offsets = torch.arange(n, device=device).unsqueeze(1) * k  # (live, 1) each sentence's first row
        beams = (offsets + top_beam.gather(1, alive)).view(-1)  # rows to continue from
        history = torch.cat([history.index_select(0, beams), top_token.gather(1, alive).view(-1, 1)], dim=1)
        if coverage is not None:
            coverage = coverage.index_select(0, beams)
        going_on = []
        for i, b in enumerate(live):
            if t + 1 >= limits[b]:  # out of length: the live hypotheses end here, unfinished
                for j in range(k):
                    bonus = penalty.score(coverage, i * k + j, b) if penalty is not None else 0.0
                    row = history[i * k + j, 1:].tolist()
                    _finish(ended[b], row, float(scores[i, j]), alpha, False, bonus)
            elif len(ended[b]) < k:
                going_on.append(i)
        if not going_on:
            break
        if len(going_on) == n:
            state = state.reorder(beams)
        else:  # done sentences leave the batch: one selection both reorders and drops rows
            keep = torch.tensor(going_on, device=device)
            rows = (keep.unsqueeze(1) * k + beam_rows).view(-1)
            state = state.index_select(beams.index_select(0, rows))
            history, scores = history.index_select(0, rows), scores.index_select(0, keep)
            if coverage is not None:
                coverage = coverage.index_select(0, rows)
            live = [live[i] for i in going_on]
    return [sorted(hyps, key=lambda h: h.score, reverse=True)[:nbest] for hyps in ended]


class _CoveragePenalty:
    """GNMT's coverage penalty: beta * sum over source words of log(min(attention received, 1))."""

    FLOOR = 1e-6  # a source word never attended to counts as log(1e-6), not minus infinity

    def __init__(self, beta: float, src_lengths: Tensor | None, beam_size: int) -> None:
        if src_lengths is None:
            raise ValueError("a coverage penalty needs the source lengths")
        self.beta, self.src_lengths, self.k = beta, src_lengths.tolist(), beam_size

    def add(self, coverage: Tensor | None, state: Any) -> Tensor:
        """The coverage of every row after this step: (rows, src_len)."""
        if getattr(state, "attention", None) is None:
            raise ValueError("decode.coverage_penalty needs a model with attention (model.attention is none)")
        attention = state.attention.float()
        return attention if coverage is None else coverage + attention

    def score(self, coverage: Tensor | None, row: int, sentence: int) -> float:
        assert coverage is not None
        received = coverage[row, : self.src_lengths[sentence]].clamp(min=self.FLOOR, max=1.0)
        return self.beta * float(received.log().sum())


def _finish(
    ended: list[Hypothesis], tokens: list[int], log_prob: float, alpha: float, eos_counted: bool, bonus: float = 0.0
) -> None:
    if log_prob != float("-inf"):
        ended.append(scored(tokens, log_prob, alpha, eos_counted, bonus))


def scored(tokens: list[int], log_prob: float, alpha: float, eos_counted: bool, bonus: float = 0.0) -> Hypothesis:
    """An ended hypothesis, ranked by log-probability / length penalty (EOS counted in the length if written),
    plus `bonus` (a coverage penalty: 0 or less)."""
    length = len(tokens) + (1 if eos_counted else 0)
    return Hypothesis(tokens, log_prob, log_prob / length_penalty(length, alpha) + bonus)


@torch.no_grad()
def forced_decode(
    step: StepFn,
    state: Any,
    targets: Tensor,
    lengths: Tensor,
    bos: int = BOS_ID,
    keep_attention: bool = False,
) -> list[ForcedScore]:
    """Score given outputs: the search's step, fed the target tokens instead of its own choices.

    targets: (batch, steps) each row y1 .. yn EOS, anything after it; lengths: (batch,) n + 1.
    Returns per row the log-probability of each target token (EOS included), summed in the same order
    as `greedy_search`, so scoring a search's own output gives back its `log_prob`. A row that is done
    leaves the batch, as in the searches. `keep_attention` as in `greedy_search`.
    """
    batch, steps = targets.shape
    token_log_probs = torch.zeros(batch, steps, device=targets.device)  # (batch, steps)
    attention: Tensor | None = None  # (batch, steps, src_len) when kept
    live = torch.arange(batch, device=targets.device)  # the rows still being scored
    limits = lengths.to(targets.device)
    prev = torch.full((batch,), bos, dtype=torch.long, device=targets.device)
    for t in range(int(lengths.max())):
        step_log_probs, state = step(prev, state)  # (live, vocab)
        prev = targets[live, t]  # (live,) the given token, not the argmax
        token_log_probs[live, t] = step_log_probs.gather(1, prev.unsqueeze(1)).squeeze(1)
        if keep_attention:
            attention = _keep_step_attention(attention, state, live, t, batch, steps)
        finished = limits <= t + 1
        if bool(finished.any()):
            if bool(finished.all()):
                break
            live, limits, prev, state = _drop_finished(finished, live, limits, prev, state)
    rows = token_log_probs.tolist()
    weights = attention.cpu() if attention is not None else [None] * batch
    return [ForcedScore(row[:n], None if w is None else w[:n]) for row, n, w in zip(rows, lengths.tolist(), weights)]
