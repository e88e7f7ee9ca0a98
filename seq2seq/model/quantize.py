"""int8 decoding on the CPU: the decoder's matrix products with 8-bit weights, for `--quantize int8`.

Decoding spends most of its time in the decoder's Linear layers, run once per output token: the output
projection (readout -> vocabulary, the largest), the readout layer, the attention's query layer and the
recurrent cell's two products W_ih x and W_hh h. `quantize_int8(model)` replaces each by an `Int8Linear`:

    W  ~  diag(s) * Q          Q int8, one scale s_o = max_j |W_oj| / 127 per output row
    y  =  x W^T + b            x quantized to 8 bits per call (its own range: "dynamic"), int32 sums

on FBGEMM's kernels (`torch.ops.quantized.linear_prepack` / `linear_dynamic`, in every x86 build of
PyTorch), so the weights are 4x smaller and the products run on 8-bit integer SIMD. The cells keep their
equations (`cells.gate_equations`) in fp32; only the two products are int8. The encoder (one fused call
per sentence), the embeddings and the attention's key projection (once per sentence) stay fp32.

Decoding only: a quantized model cannot train, and checkpoints always hold the fp32 weights.

Why these kernels: PyTorch deprecates its quantized tensors (it warns; the warning is silenced here) in
favour of torchao, but torchao 0.18's int8 paths on an AVX2 CPU run through reference kernels: for a
(320 x 256) @ (256 x 5000) product, 706 ms (int8 dynamic) and 87 ms (int8 weight-only) against 17.8 ms in
fp32 and 9.9 ms with FBGEMM (one thread, on this project's 2-core EPYC). Nothing is pinned: where the kernels
are gone, `--quantize int8` stops with a clear message.
docs/decoding.md gives the speed and BLEU it was measured at.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from seq2seq.model.cells import StackedCell, gate_equations

QUANTIZATIONS = ("none", "int8")


def int8_supported() -> bool:
    """Whether this PyTorch has the FBGEMM (x86) quantized kernels."""
    engines = torch.backends.quantized.supported_engines
    return ("fbgemm" in engines or "x86" in engines) and hasattr(torch.ops.quantized, "linear_dynamic")


class Int8Linear(nn.Module):
    """`nn.Linear` with int8 weights (per output row scales) and dynamically quantized inputs; inference only."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        """weight (out, in) and bias (out,) or None: those of an `nn.Linear`, or one product of a recurrent cell."""
        super().__init__()
        weight = weight.detach().float().cpu()
        scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()  # (out,)
        zeros = torch.zeros(weight.size(0), dtype=torch.long)
        bias = None if bias is None else bias.detach().float().cpu()
        with warnings.catch_warnings():  # "quantized tensor creation functions ... are deprecated"
            warnings.simplefilter("ignore", UserWarning)
            qweight = torch.quantize_per_channel(weight, scales, zeros, axis=0, dtype=torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(qweight, bias)
        self.out_features, self.in_features = weight.shape
        self.weight_fp32, self.bias_fp32 = weight, bias  # what a shortlist cuts (`decoder.output_rows`)

    @classmethod
    def of(cls, linear: nn.Linear) -> Int8Linear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out); reduce_range keeps FBGEMM's 16-bit pairwise sums from saturating on AVX2."""
        flat = x.reshape(-1, self.in_features).float()
        out = torch.ops.quantized.linear_dynamic(flat, self._packed, True)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int8Cell(nn.Module):
    """An `nn.GRUCell` / `nn.LSTMCell` / `nn.RNNCell` (tanh) whose two products are `Int8Linear`s."""

    def __init__(self, kind: str, cell: nn.RNNCellBase) -> None:
        super().__init__()
        self.kind = kind
        self.input_product = Int8Linear(cell.weight_ih, cell.bias_ih)  # W_ih x + b_ih
        self.state_product = Int8Linear(cell.weight_hh, cell.bias_hh)  # W_hh h + b_hh

    def forward(self, x: Tensor, state: Tensor | tuple[Tensor, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
        """x (batch, input), h (batch, hidden) or (h, c) for the LSTM -> h' or (h', c'), as the nn cell."""
        h, c = state if isinstance(state, tuple) else (state, None)
        h_new, c_new, _ = gate_equations(self.kind, self.input_product(x), self.state_product(h), h, c)
        return (h_new, c_new) if c_new is not None else h_new


def quantize_int8(model: nn.Module) -> nn.Module:
    """The decoder(s) of `model` (a `Seq2Seq` or an `Ensemble`, in eval mode, on the CPU) with int8 products.

    Changes `model` in place and returns it. Raises RuntimeError where the kernels are missing or the model
    is not on the CPU.
    """
    if not int8_supported():
        raise RuntimeError("--quantize int8 needs PyTorch's FBGEMM kernels (an x86 CPU build of PyTorch)")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise RuntimeError("--quantize int8 runs on the CPU only; add --device cpu")
    members = getattr(model, "members", [model])
    for member in members:
        decoder = member.decoder
        decoder.output = Int8Linear.of(decoder.output)
        decoder.readout = Int8Linear.of(decoder.readout)
        if decoder.attention is not None and hasattr(decoder.attention, "query_layer"):
            decoder.attention.query_layer = Int8Linear.of(decoder.attention.query_layer)
        rnn: StackedCell = decoder.rnn
        rnn.layers = nn.ModuleList(Int8Cell(rnn.kind, layer) for layer in rnn.layers)
    return model.eval()
