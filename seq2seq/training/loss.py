"""The training objective: token cross-entropy summed over a batch, padding ignored.

With label smoothing e over a vocabulary of V, the target distribution puts 1 - e + e/V on the gold token
and e/V on every other one, so for logits x of one position with gold token t:

    loss = logsumexp(x) - (1 - e) x_t - e mean(x)
    d loss / d x = softmax(x) - (1 - e) onehot(t) - e/V

`F.cross_entropy` computes this through log_softmax, a smoothing term and nll_loss, and its backward makes
several more passes over the (tokens, vocab) logits. The output layer is the largest cost per target token,
so training uses `FusedCrossEntropy`: the gradient is formed in the forward pass, a slice of rows at a time
while the slice is still in cache, and the backward only scales it: the same numbers, fewer passes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from seq2seq.vocab import PAD_ID

ROWS_PER_SLICE = 256  # on a CPU, (256, vocab) fp32 slices: 5 MB at a 5k vocabulary, within the last-level cache


class FusedCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed cross-entropy of logits (tokens, vocab) against target (tokens,), rows whose
    target is `ignore_index` left out; equal to `F.cross_entropy(..., reduction="sum")` up to rounding."""

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, target: torch.Tensor, smoothing: float, ignore_index: int
    ) -> torch.Tensor:
        vocab = logits.size(1)
        # d loss / d logits, in the logits' dtype when that is bf16 (the output layer's bf16 products read it)
        grad_dtype = torch.bfloat16 if logits.dtype == torch.bfloat16 else torch.float32
        grad = torch.empty(logits.shape, dtype=grad_dtype, device=logits.device)
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        rows = ROWS_PER_SLICE if logits.device.type == "cpu" else max(1, logits.size(0))  # a GPU: one launch each
        for start in range(0, logits.size(0), rows):
            x = logits[start : start + rows].float()  # (rows, vocab)
            t = target[start : start + rows]
            keep = t != ignore_index  # (rows,)
            gold = t.masked_fill(~keep, 0).unsqueeze(1)  # (rows, 1), any valid index where ignored
            g = grad[start : start + rows] if grad_dtype == torch.float32 else torch.empty_like(x)
            top = x.amax(dim=1, keepdim=True)  # (rows, 1)
            torch.sub(x, top, out=g).exp_()  # exp(x - max): one exp pass serves the loss and the gradient
            total_exp = g.sum(dim=1, keepdim=True)  # (rows, 1)
            lse = top + total_exp.log()  # logsumexp(x)
            loss = lse - (1 - smoothing) * x.gather(1, gold)
            if smoothing:
                loss -= smoothing * x.mean(dim=1, keepdim=True)
            total += torch.where(keep, loss.squeeze(1), 0.0).sum()
            g.div_(total_exp).sub_(smoothing / vocab)  # softmax - e/V
            g.scatter_add_(1, gold, g.new_full(gold.shape, -(1 - smoothing)))  # - (1 - e) at the gold token
            g.mul_(keep.unsqueeze(1))  # ignored rows have no gradient
            if grad_dtype != torch.float32:
                grad[start : start + rows] = g
        ctx.save_for_backward(grad)
        ctx.logits_dtype = logits.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (grad,) = ctx.saved_tensors
        # scaled where it lies, no second (tokens, vocab) tensor; a second backward (retain_graph) is refused by
        # autograd's version check on the saved tensor
        return grad.mul_(grad_output).to(ctx.logits_dtype), None, None, None


def sequence_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed token cross-entropy. logits: (batch, tgt_len, vocab); target: (batch, tgt_len), PAD ignored.

    Computed in fp32 whatever the autocast dtype of the logits. Divide by the number of target tokens
    for the mean loss per token (training does, over the whole step's batch). With gradients (training)
    it is `FusedCrossEntropy`; without (validation) PyTorch's cross-entropy.
    """
    flat_logits, flat_target = logits.reshape(-1, logits.size(-1)), target.reshape(-1)
    if torch.is_grad_enabled() and logits.requires_grad:
        return FusedCrossEntropy.apply(flat_logits, flat_target, label_smoothing, PAD_ID)
    return F.cross_entropy(
        flat_logits.float(), flat_target, ignore_index=PAD_ID, label_smoothing=label_smoothing, reduction="sum"
    )
