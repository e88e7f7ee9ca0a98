"""Greedy and beam search over one shared step function.

Both searches take `step(prev_tokens, state) -> (log_probs, state)`, where
`state` knows how to `index_select` its batch rows; the model provides that step
(`Seq2Seq.decode_step`), and a test can provide a hand-made one. Greedy is the
beam of one: `beam_search(beam_size=1)` returns exactly what `greedy_search` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.data import Batch
from seq2seq.tokenizer import BOS_ID, EOS_ID

S = TypeVar("S")
StepFn = Callable[[Tensor, S], tuple[Tensor, S]]


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, without BOS and EOS
    log_prob: float  # sum of the token log-probabilities (EOS included when it was produced)
    score: float  # log_prob / length penalty: what beam search ranks by


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha; alpha = 0 ranks by raw log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def greedy_search(
    step: StepFn, state: Any, max_lengths: Tensor, bos: int = BOS_ID, eos: int = EOS_ID
) -> list[Hypothesis]:
    """Pick the most probable token at every step. max_lengths: (batch,) output tokens allowed."""
    batch = max_lengths.size(0)
    prev = torch.full((batch,), bos, dtype=torch.long, device=max_lengths.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=max_lengths.device)
    tokens, log_probs = [], []
    for t in range(int(max_lengths.max())):
        step_log_probs, state = step(prev, state)  # (batch, vocab)
        best, prev = step_log_probs.max(dim=1)
        tokens.append(prev)
        log_probs.append(best)
        finished |= (prev == eos) | (t + 1 >= max_lengths)
        if bool(finished.all()):
            break
    rows, row_log_probs = torch.stack(tokens, 1).tolist(), torch.stack(log_probs, 1).tolist()
    return [_cut(row, lp, limit, eos) for row, lp, limit in zip(rows, row_log_probs, max_lengths.tolist())]


def _cut(row: list[int], log_probs: list[float], limit: int, eos: int) -> Hypothesis:
    """A greedy row up to its EOS or its sentence's max length, whichever comes first."""
    end = min(row.index(eos) + 1 if eos in row else len(row), limit)
    tokens = row[:end]
    total = sum(log_probs[:end])
    return Hypothesis([t for t in tokens if t != eos], total, total)


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
) -> list[list[Hypothesis]]:
    """Batched beam search; returns the `nbest` best hypotheses per sentence, best first.

    `state` must already hold `beam_size` rows per sentence (sentence-major: rows
    b*K .. b*K+K-1 belong to sentence b). A hypothesis ends when it emits EOS or
    reaches its sentence's max length; a sentence is done once `beam_size`
    hypotheses have ended, and they are ranked by log-probability / length penalty.
    """
    batch, k = max_lengths.size(0), beam_size
    device = max_lengths.device
    scores = torch.zeros(batch, k, device=device)  # (batch, beam) summed log-probs of the live hypotheses
    scores[:, 1:] = float("-inf")  # all beams start identical: let only the first one expand
    history = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)
    offsets = (torch.arange(batch, device=device) * k).unsqueeze(1)  # (batch, 1)
    ended: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = [False] * batch
    limits = max_lengths.tolist()
    for t in range(int(max_lengths.max())):
        log_probs, state = step(history[:, -1], state)  # (batch*beam, vocab)
        vocab = log_probs.size(1)
        candidates = scores.unsqueeze(2) + log_probs.view(batch, k, vocab)  # (batch, beam, vocab)
        top_scores, top_index = candidates.view(batch, -1).topk(2 * k, dim=1)  # (batch, 2*beam)
        top_beam, top_token = top_index // vocab, top_index % vocab
        # Candidates ending in EOS among the best k end their hypothesis.
        is_eos = top_token == eos
        for b, j in (is_eos[:, :k]).nonzero().tolist():
            if not done[b]:
                row = history[offsets[b, 0] + top_beam[b, j], 1:].tolist()
                _finish(ended[b], row, float(top_scores[b, j]), alpha, eos_counted=True)
        # The best k candidates that do not end in EOS live on (there are always k: at most one EOS per beam).
        alive = torch.argsort(is_eos.to(torch.int8), dim=1, stable=True)[:, :k]  # (batch, beam) positions
        scores = top_scores.gather(1, alive)
        beams = (offsets + top_beam.gather(1, alive)).view(-1)  # rows to continue from
        new_tokens = top_token.gather(1, alive).view(-1, 1)
        history = torch.cat([history.index_select(0, beams), new_tokens], dim=1)
        state = state.index_select(beams)
        for b in range(batch):
            if done[b]:
                continue
            if t + 1 >= limits[b]:  # out of length: the live hypotheses end here, unfinished
                for j in range(k):
                    _finish(ended[b], history[b * k + j, 1:].tolist(), float(scores[b, j]), alpha, eos_counted=False)
                done[b] = True
            elif len(ended[b]) >= k:
                done[b] = True
        if all(done):
            break
    return [sorted(hyps, key=lambda h: h.score, reverse=True)[:nbest] for hyps in ended]


def _finish(ended: list[Hypothesis], tokens: list[int], log_prob: float, alpha: float, eos_counted: bool) -> None:
    if log_prob == float("-inf"):
        return
    length = len(tokens) + (1 if eos_counted else 0)
    ended.append(Hypothesis(tokens, log_prob, log_prob / length_penalty(length, alpha)))


@torch.no_grad()
def translate_batch(model: Any, batch: Batch, cfg: DecodeConfig) -> list[list[Hypothesis]]:
    """Decode one batch with `model` (a `Seq2Seq`); greedy when `cfg.beam_size == 1`."""
    memory, state = model.encode(batch.src, batch.src_lengths)
    source_lengths = (batch.src_lengths - 1).float()  # without the EOS
    max_lengths = (cfg.max_len_a * source_lengths + cfg.max_len_b).long().clamp(min=1).to(batch.src.device)
    if cfg.beam_size > 1:  # every sentence's memory and state, once per beam
        repeat = torch.arange(batch.size, device=batch.src.device).repeat_interleave(cfg.beam_size)
        memory, state = memory.index_select(repeat), state.index_select(repeat)

    def step(prev: Tensor, st: Any) -> tuple[Tensor, Any]:
        return model.decode_step(prev, st, memory)[:2]

    if cfg.beam_size == 1:
        return [[h] for h in greedy_search(step, state, max_lengths)]
    return beam_search(step, state, max_lengths, cfg.beam_size, cfg.alpha, cfg.nbest)
