"""Dropout whose random mask costs a third of PyTorch's on a CPU.

Dropout zeroes each element with probability p in training and scales the rest by 1 / (1 - p), so the
expected value stays the same and evaluation needs no change. On a CPU, `F.dropout` draws its mask with
`bernoulli_`, one call of the random generator per element: for the Multi30k CPU recipe's three large
dropouts (source and target embeddings, the readout), each about (3000 tokens, 256), that was 7-8 ms a
step each, about 4% of the step together. Here one 64-bit draw gives four 16-bit
uniform numbers, and an element is dropped when its number falls below round(p * 65536): p is rounded to
a multiple of 1/65536 (0.2 becomes 0.199997), and the kept elements are scaled by the exact inverse of
that rounded keep rate, so the expectation is unchanged. About 2.7 ms with its backward instead of 8.4
(docs/benchmarks.md). The draws come from PyTorch's default generator, as `F.dropout`'s do, so seeding
and the checkpointed random state work as before. On a GPU (`F.dropout` has a fused kernel there) and
in evaluation this is `F.dropout`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = 1 << 16  # the mask's resolution: 16 bits of randomness per element


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """F.dropout(x, p, training), with the CPU mask drawn 16 bits per element (the module's docstring)."""
    if not training or p == 0.0 or x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    threshold = round(p * LEVELS)  # drop when the 16-bit number is below it
    words = (x.numel() + 3) // 4  # 64-bit draws, four 16-bit numbers each
    # the full signed range: random_() alone draws from [0, 2**63), whose top bit is always 0
    bits = torch.empty(words, dtype=torch.int64).random_(-(1 << 63), (1 << 63) - 1)
    numbers = bits.view(torch.int16)[: x.numel()].view(x.shape)  # uniform on [-32768, 32768)
    keep = numbers >= threshold - LEVELS // 2
    mask = keep.to(x.dtype).mul_(LEVELS / (LEVELS - threshold))  # 0 or 1 / (1 - p)
    return x * mask


class Dropout(nn.Dropout):
    """nn.Dropout with `dropout`'s cheaper mask on a CPU; the same `p`, the same use."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)
