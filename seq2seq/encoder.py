"""The encoder: embeddings, then a (bi)directional recurrent network over the whole source."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.cells import make_sequence_rnn


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
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_sequence_rnn(cell, embedding_size, hidden_size, num_layers, dropout, bidirectional)
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """src: (batch, src_len) ids; src_lengths: (batch,) on the CPU.

        Returns outputs (batch, src_len, output_size), zero at padding, and the
        final state of the top layer, both directions concatenated: (batch, output_size).
        Padding is packed away, so the backward direction starts at each sentence's true end.
        """
        embedded = self.dropout(self.embedding(src))  # (batch, src_len, embedding)
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, final = self.rnn(packed)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))
        if isinstance(final, tuple):  # LSTM: (h_n, c_n); the summary is h_n
            final = final[0]
        batch = src.size(0)
        top = final.view(self.num_layers, self.num_directions, batch, -1)[-1]  # (directions, batch, hidden)
        summary = torch.cat(tuple(top), dim=1)  # (batch, directions * hidden)
        return outputs, summary
