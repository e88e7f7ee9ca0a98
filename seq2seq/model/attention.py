"""Attention: at every decoder step, a fresh weighted average of *all* encoder states.

Without attention the decoder sees the source only through one fixed context
vector (the encoder's final state), a bottleneck for long sentences. With it,
the decoder query q scores every encoder output k_j, the scores are softmaxed
over the source positions (padding masked out, so it gets exactly zero weight),
and the context is sum_j a_j v_j.

- `bahdanau` (additive):  score(q, k) = v^T tanh(W_q q + W_k k)
- `luong_general`:        score(q, k) = q^T W k
- `luong_dot`:            score(q, k) = q^T k   (q and k must have one size)

The key projection (W_k k or W k) depends only on the encoder outputs, so it is
computed once per batch by `project_keys`, not at every decoder step. The queries
may be one step's (search) or every step's at once (training without input feeding,
where the decoder RNN runs over the whole target before attention).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seq2seq.model.cells import tanh, tanh_
from seq2seq.model.precision import Linear


class Attention(nn.Module):
    def __init__(self, kind: str, query_size: int, key_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            attention_size = attention_size or query_size
            self.key_layer = Linear(key_size, attention_size, bias=False)
            self.query_layer = Linear(query_size, attention_size, bias=False)
            self.energy = nn.Linear(attention_size, 1, bias=False)
        elif kind == "luong_general":
            self.key_layer = Linear(key_size, query_size, bias=False)
        elif kind == "luong_dot":
            if query_size != key_size:
                raise ValueError(f"luong_dot attention needs query size == key size, got {query_size} and {key_size}")
        else:
            raise ValueError(f"unknown attention {kind!r}; choose bahdanau, luong_general or luong_dot")

    def project_keys(self, memory: Tensor) -> Tensor:
        """memory: (batch, src_len, key_size) -> keys ready for scoring, once per batch."""
        return memory if self.kind == "luong_dot" else self.key_layer(memory)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query: (batch, steps, query_size), one query per decoder step (steps = 1 in search); keys: from
        `project_keys`; values: (batch, src_len, value_size); mask: (batch, src_len), True at real tokens.

        Returns context (batch, steps, value_size) and weights (batch, steps, src_len), each row summing to 1.
        """
        if self.kind == "bahdanau":
            q = self.query_layer(query).unsqueeze(2)  # (batch, steps, 1, attention)
            energies = q + keys.unsqueeze(1)  # (batch, steps, src_len, attention): a fresh tensor
            energies = tanh(energies) if energies.requires_grad else tanh_(energies)  # in place in search
            scores = self.energy(energies).squeeze(3)  # (batch, steps, src_len)
        else:
            scores = torch.bmm(keys, query.transpose(1, 2)).transpose(1, 2)  # (batch, steps, src_len)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=2)  # (batch, steps, src_len)
        context = torch.bmm(weights, values)  # (batch, steps, value_size)
        return context, weights
