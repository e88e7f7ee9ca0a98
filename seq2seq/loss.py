"""The training objective: token cross-entropy summed over a batch, padding ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seq2seq.tokenizer import PAD_ID


def sequence_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed token cross-entropy. logits: (batch, tgt_len, vocab); target: (batch, tgt_len), PAD ignored.

    Computed in fp32 whatever the autocast dtype of the logits. Divide by the number of target tokens
    for the mean loss per token (training does, over the whole step's batch).
    """
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        target.reshape(-1),
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
