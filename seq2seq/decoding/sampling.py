"""Sampling: draw each output token from the model's distribution instead of searching for the best one.

Back-translation wants varied sources, not the single most probable one (sampled back-translation beats
beam back-translation: Edunov et al., 2018). The draw can be narrowed: `top_k` keeps the k most
probable tokens, `top_p` the fewest whose probability reaches p (nucleus sampling), `epsilon` drops
the tokens below that probability, and `temperature` sharpens (< 1) or flattens (> 1) the distribution
first. `top_k=1` keeps the most probable token only: exactly greedy search.

Reproducible whatever the batching: the random numbers of a sample are a function of `decode.seed`,
its source sentence (its subword ids), which of the sentence's samples it is and the output position,
never of the batch around it. So the same seed gives the same samples with 1 or 64 sentences a batch,
in one process or several, and however a server grouped the requests (a sentence that appears twice
gets the same samples twice). The numbers come from a counter-based generator (SplitMix64's mixing
function over those four things), not from a generator with a state that batches would share.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from seq2seq.config import DecodeConfig

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: SplitMix64's increment
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: every input bit flips about half the output bits. (n,) uint64 -> (n,) uint64."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def sample_streams(src: Tensor, src_lengths: Tensor, seed: int, samples: int) -> np.ndarray:
    """One random stream per sample: `samples` per sentence, sentence-major. (batch*samples,) uint64.

    src: (batch, src_len) subword ids, padded; src_lengths: (batch,) ids per sentence (EOS included).
    """
    ids = src.cpu().numpy().astype(np.uint64)  # (batch, src_len)
    lengths = src_lengths.cpu().numpy()
    with np.errstate(over="ignore"):
        h = _mix(np.full(len(ids), np.uint64(seed) + _GOLDEN, dtype=np.uint64))  # (batch,)
        for j in range(ids.shape[1]):
            h = np.where(j < lengths, _mix(h ^ (ids[:, j] + _GOLDEN * np.uint64(j + 1))), h)
        k = np.tile(np.arange(1, samples + 1, dtype=np.uint64), len(ids))  # (batch*samples,) 1..samples
        return _mix(np.repeat(h, samples) ^ (k * _M2))


def uniforms(streams: np.ndarray, position: int | np.ndarray) -> np.ndarray:
    """Each stream's number for output position `position` (one for all, or (rows,): each row's), uniform in
    [0, 1). (rows,) uint64 -> (rows,) float64."""
    with np.errstate(over="ignore"):
        step = np.asarray(position).astype(np.uint64) + np.uint64(1)
        bits = _mix(streams + _GOLDEN * step) >> np.uint64(11)  # 53 random bits
    return bits.astype(np.float64) * 2.0**-53


class Sampler:
    """Draws one token per row from a step's log-probabilities (`search.one_token_at_a_time` calls `pick`).

    `streams` (rows,) uint64: each row's random stream (`sample_streams`), in the order of the search's rows.
    """

    def __init__(self, cfg: DecodeConfig, streams: np.ndarray) -> None:
        self.top_k, self.top_p, self.epsilon, self.temperature = cfg.top_k, cfg.top_p, cfg.epsilon, cfg.temperature
        self.streams = streams

    def kept(self, log_probs: Tensor) -> tuple[Tensor, Tensor]:
        """The distribution the draw is made from: (probabilities, most probable first, zero where a token is
        left out; their columns), both (rows, vocab). Whatever the settings, the most probable token stays in."""
        scaled = log_probs.double() if self.temperature == 1 else log_probs.double() / self.temperature
        probs, columns = scaled.softmax(dim=1).sort(dim=1, descending=True, stable=True)  # (rows, vocab) each
        keep = torch.ones_like(probs, dtype=torch.bool)
        if self.top_k:
            keep[:, self.top_k :] = False
        if self.top_p < 1:
            keep &= probs.cumsum(dim=1) - probs < self.top_p  # those before the mass reaches p, and the one that does
        if self.epsilon:
            keep &= probs >= self.epsilon
        keep[:, 0] = True
        return probs * keep, columns

    def pick(self, log_probs: Tensor, live: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """log_probs (rows, vocab) of the live rows (`live`: their places among all rows; `positions`: their
        output positions, (rows,)) -> each row's drawn column (rows,) and the model's log-probability of it
        (rows,) (before temperature: the model's own)."""
        probs, columns = self.kept(log_probs)
        cdf = probs.cumsum(dim=1)  # (rows, vocab): the kept ones form a prefix, so the rest adds nothing
        u = torch.from_numpy(uniforms(self.streams[live.cpu().numpy()], positions.cpu().numpy())).to(cdf.device)
        drawn = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True)  # (rows, 1)
        drawn = torch.minimum(drawn, (probs > 0).sum(dim=1, keepdim=True) - 1)  # rounding at the end of the cdf
        column = columns.gather(1, drawn).squeeze(1)
        return column, log_probs.gather(1, column.unsqueeze(1)).squeeze(1)
