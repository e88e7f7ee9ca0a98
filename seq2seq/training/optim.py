"""How the weights move: the optimizer, the learning-rate schedule (which also says when it steps, so no
caller checks its name) and gradient clipping (the usual cure for exploding gradients in recurrent
networks). Built once, outside the training loop; `seq2seq.training.step` uses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seq2seq.config import TrainConfig


def clip_gradients(parameters: list[nn.Parameter], cfg: TrainConfig) -> float:
    """Clip by global norm and/or by value; returns the global gradient norm *before* clipping.

    Clipping the norm rescales the whole gradient when it is too long, keeping its
    direction: the usual cure for exploding gradients in recurrent networks.
    """
    max_norm = cfg.clip_grad_norm if cfg.clip_grad_norm is not None else float("inf")
    norm = float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
    if cfg.clip_grad_value is not None:
        torch.nn.utils.clip_grad_value_(parameters, cfg.clip_grad_value)
    return norm


def build_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """`train.optimizer`: adam, adamw or sgd (with `train.momentum`).

    Adam and AdamW take PyTorch's fused kernel (one pass over each parameter for the whole update) where the
    parameters are on a CPU or a CUDA GPU and this PyTorch has it for that device: 2.8 ms instead of 9.8 for
    the Multi30k CPU recipe's 4.5M parameters (docs/benchmarks.md). Otherwise the default implementation.
    """
    if cfg.optimizer in ("adam", "adamw"):
        adam = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        if all(p.device.type in ("cpu", "cuda") for p in params):
            try:
                return adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
            except RuntimeError:  # an older PyTorch without this device's fused kernel
                pass
        return adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@dataclass
class LRSchedule:
    """A learning-rate scheduler and when it steps: after every update, or after each validation (with its BLEU)."""

    scheduler: Any = None  # None: a constant learning rate
    on_validation: bool = False  # stepped with the validation BLEU, not after every update

    def after_update(self) -> None:
        if self.scheduler is not None and not self.on_validation:
            self.scheduler.step()

    def after_validation(self, bleu: float) -> None:
        if self.scheduler is not None and self.on_validation:
            self.scheduler.step(bleu)

    def state_dict(self) -> dict[str, Any] | None:
        return self.scheduler.state_dict() if self.scheduler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scheduler is not None and state is not None:
            self.scheduler.load_state_dict(state)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> LRSchedule:
    """`train.lr_scheduler`: none, plateau (halve on validation-BLEU plateaus) or warmup_decay."""
    if cfg.lr_scheduler == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.lr_decay_factor, patience=cfg.lr_patience, min_lr=cfg.lr_min
        )
        return LRSchedule(plateau, on_validation=True)
    if cfg.lr_scheduler == "warmup_decay":  # linear warm-up, then 1/sqrt(step) decay
        warmup = max(1, cfg.warmup_steps)
        return LRSchedule(
            torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, math.sqrt(warmup / (s + 1))))
        )
    return LRSchedule()
