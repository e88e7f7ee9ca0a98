"""bf16 matrix products for fp32 training (`train.matmul_precision`).

The training step's time goes mostly to matrix products: the output layer's three (tokens x readout x
vocabulary) products a step (forward, input gradient, weight gradient), and at every decoder step those of
the recurrent cell, the attention's query and the readout. A CPU with native bf16 (AVX512-BF16 or AMX)
multiplies bf16 matrices 2-3x as fast as fp32 ones, accumulating in fp32 inside the product. With
`matmul_dtype` bf16, the layers that have one (in training mode, with gradients on) round their input and
weight to bf16 for those products and keep everything else in fp32: the weights and the optimizer's update
of them, their gradients, the recurrent states, the gates. That is what autocast does to such layers on a
GPU, without autocast's casts around every other op. Validation, search and the insight probe (eval mode,
or no gradients) run fp32. The encoder keeps its fused fp32 kernel: stepping it in Python to use bf16
products was no faster on the 2-core CPU (docs/benchmarks.md).

Which precision `auto` picks is measured at the first training step: `seq2seq.training.matmul_precision`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class LowPrecisionMatmul(torch.autograd.Function):
    """y = x W^T with the forward and both backward products in `dtype`; x and W are fp32 and get fp32
    gradients. x: (..., in), W: (out, in) -> y (..., out) in `dtype`."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, dtype: torch.dtype) -> Tensor:
        low_x, low_weight = x.reshape(-1, x.size(-1)).to(dtype), weight.to(dtype)  # (N, in), (out, in)
        ctx.save_for_backward(low_x, low_weight)
        ctx.shapes = x.shape, x.dtype, weight.dtype
        return (low_x @ low_weight.t()).view(*x.shape[:-1], weight.size(0))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        low_x, low_weight = ctx.saved_tensors
        x_shape, x_dtype, weight_dtype = ctx.shapes
        grad = grad.reshape(-1, grad.size(-1)).to(low_x.dtype)  # (N, out)
        grad_x = (grad @ low_weight).to(x_dtype).view(x_shape)  # (..., in)
        grad_weight = (grad.t() @ low_x).to(weight_dtype)  # (out, in)
        return grad_x, grad_weight, None


def uses_low_precision(layer: nn.Module, x: Tensor) -> bool:
    """Whether `layer` runs its products for input x in its `matmul_dtype`: when that is not fp32, in training
    mode with gradients on, for fp32 x. (Validation, search and the insight probe run in eval mode: fp32.)"""
    dtype = layer.matmul_dtype
    return dtype != torch.float32 and layer.training and torch.is_grad_enabled() and x.dtype == torch.float32


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> Tensor:
    """F.linear(x, weight, bias) with the products in `dtype` (bf16); fp32 out, the bias added in fp32."""
    y = LowPrecisionMatmul.apply(x, weight, dtype)
    return y.float() if bias is None else torch.add(bias, y)  # the bias added in fp32


class Linear(nn.Linear):
    """nn.Linear whose training products run in `matmul_dtype` (set by `set_matmul_dtype`); fp32 out."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.matmul_dtype = torch.float32

    def forward(self, x: Tensor) -> Tensor:
        if not uses_low_precision(self, x):
            return super().forward(x)
        return linear(x, self.weight, self.bias, self.matmul_dtype)


def set_matmul_dtype(model: nn.Module, dtype: torch.dtype) -> int:
    """Set `matmul_dtype` on every layer of `model` that has one; returns how many."""
    layers = [module for module in model.modules() if hasattr(module, "matmul_dtype")]
    for module in layers:
        module.matmul_dtype = dtype
    return len(layers)
