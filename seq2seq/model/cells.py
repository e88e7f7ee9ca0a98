"""The three recurrent cells, their equations, and how the encoder and decoder build them.

A recurrent cell applies the *same* weights at every time step:

    h_t = cell(x_t, h_{t-1}; W)          (one W for all t)

- `rnn`  (vanilla tanh RNN):  h' = tanh(W_ih x + b_ih + W_hh h + b_hh).
  Its gradient through time is a product of Jacobians that tends to vanish
  (or explode) over long distances.
- `gru`  (reset gate r, update gate z):
      r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
      z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
      n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
      h' = (1 - z) * n + z * h
  The update gate interpolates with the old state, an additive path that lets
  gradients survive many steps.
- `lstm` (input gate i, forget gate f, output gate o, cell state c):
      i, f, o = sigmoid(...), g = tanh(...)
      c' = f * c + i * g
      h' = o * tanh(c')
  The cell state is updated additively, gated by f: the "constant error carousel".

The encoder runs a whole sequence at once with PyTorch's fused `nn.RNN`/`nn.GRU`/
`nn.LSTM` (one kernel over all time steps); the decoder, which must interleave
attention with recurrence, steps a stack of `nn.*Cell`s. When nothing computed
after a step feeds the next one (no input feeding, every input token known:
training with teacher forcing), `StackedCell.sequence` runs the same cells' weights
through the fused kernel instead. `cell_equations` spells
the formulas out with the same weights: the tests hold both fused kernels to it
(and to a NumPy version), and it is what gate introspection reads.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq.model.dropout import Dropout
from seq2seq.model.precision import linear, uses_low_precision


def tanh_(x: Tensor) -> Tensor:
    """tanh(x) in place, for a tensor outside autograd (search). On a CPU in fp32 as 2 sigmoid(2x) - 1 (within
    2e-7): PyTorch's CPU tanh kernel runs about 6x slower than its sigmoid (2.9M floats: 5.4 ms against 0.8 ms
    on this project's 2-core EPYC), so four cheap passes beat one tanh."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return x.tanh_()
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)


class _SigmoidTanh(torch.autograd.Function):
    """tanh by `tanh_`'s passes, with tanh's own backward (d tanh = 1 - tanh^2, from the saved output)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        y = torch.mul(x, 2).sigmoid_().mul_(2).sub_(1)  # 2 sigmoid(2x) - 1, the first pass making the copy
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def tanh(x: Tensor) -> Tensor:
    """torch.tanh, faster on a CPU in fp32 (`tanh_`), with gradients: the attention's energies in training."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or not x.requires_grad:
        return torch.tanh(x)
    return _SigmoidTanh.apply(x)


FUSED_KERNELS = {"rnn": torch.rnn_tanh, "gru": torch.gru, "lstm": torch.lstm}  # what nn.RNN/GRU/LSTM call
CELL_CLASSES = {"rnn": (nn.RNN, nn.RNNCell), "gru": (nn.GRU, nn.GRUCell), "lstm": (nn.LSTM, nn.LSTMCell)}
SEQUENCE_KINDS = {"RNN_TANH": "rnn", "GRU": "gru", "LSTM": "lstm"}  # nn.RNNBase.mode -> the names above


def make_sequence_rnn(
    cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool
) -> nn.RNNBase:
    """A fused multi-layer RNN over whole sequences (the encoder)."""
    rnn_class, _ = CELL_CLASSES[cell]
    kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
    return rnn_class(
        input_size,
        hidden_size,
        num_layers=num_layers,
        dropout=dropout if num_layers > 1 else 0.0,
        bidirectional=bidirectional,
        batch_first=True,
        **kwargs,
    )


@dataclass
class CellState:
    """A stack's state: per layer h (batch, hidden), and per layer c for the LSTM."""

    hidden: tuple[Tensor, ...]
    cell: tuple[Tensor, ...] | None = None

    def index_select(self, index: Tensor) -> CellState:
        """Reorder / repeat batch rows (beam search)."""
        pick = lambda ts: tuple(t.index_select(0, index) for t in ts)  # noqa: E731
        return CellState(pick(self.hidden), None if self.cell is None else pick(self.cell))

    def cat(self, other: CellState) -> CellState:
        """This state's rows, then `other`'s (a running batch that sentences join)."""
        join = lambda a, b: tuple(torch.cat([x, y]) for x, y in zip(a, b))  # noqa: E731
        cell = None if self.cell is None or other.cell is None else join(self.cell, other.cell)
        return CellState(join(self.hidden, other.hidden), cell)


class StackedCell(nn.Module):
    """`num_layers` cells of one kind, one time step at a time, with dropout between layers."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        _, cell_class = CELL_CLASSES[cell]
        kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.kind = cell
        self.hidden_size = hidden_size
        self.layers = nn.ModuleList(
            cell_class(input_size if i == 0 else hidden_size, hidden_size, **kwargs) for i in range(num_layers)
        )
        self.dropout = Dropout(dropout)
        self.matmul_dtype = torch.float32  # bf16: the training products in bf16 (`seq2seq.model.precision`)

    def forward(self, x: Tensor, state: CellState) -> tuple[Tensor, CellState]:
        """x: (batch, input_size) -> output of the top layer (batch, hidden), new state."""
        hidden, cells = [], []
        low = uses_low_precision(self, x)
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            c = None if state.cell is None else state.cell[i]
            if low:  # the same equations, the two products in bf16
                gi = linear(x, layer.weight_ih, layer.bias_ih, self.matmul_dtype)  # (batch, gates * hidden)
                gh = linear(state.hidden[i], layer.weight_hh, layer.bias_hh, self.matmul_dtype)
                h, c, _ = gate_equations(self.kind, gi, gh, state.hidden[i], c)
            elif self.kind == "lstm":
                h, c = layer(x, (state.hidden[i], c))
            else:
                h = layer(x, state.hidden[i])
            if self.kind == "lstm":
                cells.append(c)
            hidden.append(h)
            x = h
        return x, CellState(tuple(hidden), tuple(cells) if self.kind == "lstm" else None)

    def sequence(self, x: Tensor, state: CellState) -> Tensor:
        """All time steps at once: x (batch, steps, input_size) -> the top layer's outputs (batch, steps, hidden).

        The fused kernel of `nn.GRU` (`nn.LSTM`, `nn.RNN`) with this stack's weights, in the same layout, and
        the same dropout between layers: equal to calling `forward` step by step (tests/test_model.py).
        """
        weights = [w for layer in self.layers for w in (layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh)]
        hidden = torch.stack(state.hidden)  # (layers, batch, hidden)
        if self.kind == "lstm":
            assert state.cell is not None
            return fused_rnn("lstm", x, (hidden, torch.stack(state.cell)), weights, self.dropout.p, self.training)
        return fused_rnn(self.kind, x, hidden, weights, self.dropout.p, self.training)


def direction_weights(rnn: nn.RNNBase, layer: int, direction: int) -> list[Tensor]:
    """[w_ih, w_hh, b_ih, b_hh] of one layer and direction (1: the backward one) of a sequence RNN."""
    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    return [getattr(rnn, name + suffix) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def fused_rnn(
    kind: str, x: Tensor, state: Tensor | tuple[Tensor, Tensor], weights: list[Tensor], dropout: float, training: bool
) -> Tensor:
    """The fused kernel of nn.RNN/GRU/LSTM, unidirectional and batch-first: x (batch, steps, input), state (layers,
    batch, hidden) (a pair for the LSTM), weights [w_ih, w_hh, b_ih, b_hh] per layer -> the top layer's outputs.

    Under CPU autocast oneDNN's LSTM kernel is bypassed (PyTorch's own loop runs instead, its products in bf16):
    it has no bf16 primitive on CPUs without native bf16 and fails there.
    """
    args = (weights, True, len(weights) // 4, dropout, training, False, True)
    bypass = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
    with torch.backends.mkldnn.flags(enabled=False) if bypass else nullcontext():
        return FUSED_KERNELS[kind](x, state, *args)[0]


def cell_equations(
    cell: str, x: Tensor, h: Tensor, c: Tensor | None, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
    """One step written out gate by gate, with PyTorch's weight layout.

    x: (batch, input), h and c: (batch, hidden); w_ih: (gates*hidden, input),
    w_hh: (gates*hidden, hidden). Returns (h', c' or None, {gate name: activation}).
    Gate order in the weights is PyTorch's: GRU (r, z, n), LSTM (i, f, g, o).
    """
    gi = x @ w_ih.T + b_ih  # the input's contribution, (batch, gates*hidden)
    gh = h @ w_hh.T + b_hh  # the previous state's contribution
    return gate_equations(cell, gi, gh, h, c)


def gate_equations(
    cell: str, gi: Tensor, gh: Tensor, h: Tensor, c: Tensor | None
) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
    """The gates from the input's and the state's contributions gi = W_ih x + b_ih and gh = W_hh h + b_hh,
    each (batch, gates*hidden): what `cell_equations` and the int8 cells (`seq2seq.model.quantize`) share."""
    if cell == "rnn":
        h_new = torch.tanh(gi + gh)
        return h_new, None, {"hidden": h_new}
    if cell == "gru":
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)  # reset gate: how much of the old state shapes the candidate
        z = torch.sigmoid(i_z + h_z)  # update gate: keep the old state (z -> 1) or take the candidate
        n = torch.tanh(i_n + r * h_n)  # candidate state
        h_new = (1 - z) * n + z * h
        return h_new, None, {"reset": r, "update": z}
    if cell == "lstm":
        assert c is not None, "the LSTM needs a cell state"
        i, f, g, o = (gi + gh).chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_new = f * c + i * g  # forget some of the old memory, write some new
        h_new = o * torch.tanh(c_new)  # expose part of it
        return h_new, c_new, {"input": i, "forget": f, "output": o}
    raise ValueError(f"unknown cell {cell!r}; choose one of {list(CELL_CLASSES)}")
