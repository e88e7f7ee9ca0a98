"""The encoder: embeddings, then a (bi)directional recurrent network over the whole source.

The backward direction must start at each sentence's last real token, not at its padding. On a GPU,
packing the batch does that inside cuDNN. On a CPU, PyTorch's packed RNN builds the gradient of every
time step's slice of the input projection as a zero-filled copy of the whole projection (a fill and an
add of (tokens, gates * hidden) per step), so there `run_unpacked` runs the same weights over the padded
batch instead, the backward direction over each sentence reversed within its length: the same numbers.
Training batches are sorted by source length, so the padding it also computes is small.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.model.cells import SEQUENCE_KINDS, direction_weights, fused_rnn, make_sequence_rnn
from seq2seq.model.dropout import Dropout, dropout


class Encoder(nn.Module):
    """Reads the source once and returns one vector per source position plus a summary vector."""

    def __init__(
        self,
        cell: str,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        bidirectional: bool,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=pad_id)
        self.dropout = Dropout(dropout)
        self.rnn = make_sequence_rnn(cell, embedding_size, hidden_size, num_layers, dropout, bidirectional)
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """src: (batch, src_len) ids; src_lengths: (batch,) on the CPU.

        Returns outputs (batch, src_len, output_size), zero at padding, and the
        final state of the top layer, both directions concatenated: (batch, output_size).
        The backward direction starts at each sentence's true end: packed on a GPU, `run_unpacked` elsewhere.
        """
        embedded = self.dropout(self.embedding(src))  # (batch, src_len, embedding)
        if not embedded.is_cuda:
            return run_unpacked(self.rnn, embedded, src_lengths)
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, final = self.rnn(packed)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))
        if isinstance(final, tuple):  # LSTM: (h_n, c_n); the summary is h_n
            final = final[0]
        batch = src.size(0)
        top = final.view(self.num_layers, self.num_directions, batch, -1)[-1]  # (directions, batch, hidden)
        summary = torch.cat(tuple(top), dim=1)  # (batch, directions * hidden)
        return outputs, summary


def reverse_within_lengths(x: Tensor, index: Tensor) -> Tensor:
    """x (batch, steps, features) with each row's real steps in reverse order: `index` from `reversal_index`."""
    return x.gather(1, index.unsqueeze(2).expand_as(x))


def reversal_index(lengths: Tensor, steps: int) -> Tensor:
    """(batch, steps): position t of row b reads lengths[b] - 1 - t among the real steps, itself in the padding."""
    positions = torch.arange(steps, device=lengths.device).unsqueeze(0)  # (1, steps)
    lengths = lengths.unsqueeze(1)  # (batch, 1)
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


def run_unpacked(rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """`rnn` (batch_first nn.RNN/GRU/LSTM) over padded x (batch, steps, input) without packing, layer by layer
    and direction by direction with its own weights, as `Encoder.forward` returns: outputs (batch, steps,
    directions * hidden), zero at padding, and the top layer's final states (batch, directions * hidden)."""
    batch, steps, _ = x.shape
    lengths = lengths.to(x.device)
    index = reversal_index(lengths, steps)
    directions = 2 if rnn.bidirectional else 1
    kind = SEQUENCE_KINDS[rnn.mode]
    start = x.new_zeros(1, batch, rnn.hidden_size)
    for layer in range(rnn.num_layers):
        if layer > 0:
            x = dropout(x, rnn.dropout, rnn.training)  # between layers, as nn.GRU does
        outputs = []
        for direction in range(directions):
            state = (start, start) if kind == "lstm" else start
            inputs = reverse_within_lengths(x, index) if direction else x
            weights = direction_weights(rnn, layer, direction)
            out = fused_rnn(kind, inputs, state, weights, 0.0, rnn.training)  # (batch, steps, hidden)
            outputs.append(reverse_within_lengths(out, index) if direction else out)
        x = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]
    outputs = x * (index.unsqueeze(2) < lengths.view(-1, 1, 1))  # padding: zero, as packing leaves it
    hidden = rnn.hidden_size
    last = outputs[torch.arange(batch, device=x.device), lengths - 1, :hidden]  # forward: at the last real step
    summary = torch.cat([last, outputs[:, 0, hidden:]], dim=1) if directions == 2 else last  # backward: at step 0
    return outputs, summary
