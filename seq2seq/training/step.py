"""One update of the weights: teacher-forced forward pass, loss, backward, gradient clipping, optimizer step.

`TrainStep` needs a model and a `TrainConfig`, nothing else: the trainer calls it in its loop, the
benchmark times it alone. It owns the optimizer and schedule (`seq2seq.training.optim`), the teacher-forcing
schedule, mixed precision and the choice of the products' precision (`seq2seq.model.precision`).
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seq2seq.config import TrainConfig
from seq2seq.data.batches import Batch
from seq2seq.device import autocast_dtype
from seq2seq.model.precision import set_matmul_dtype
from seq2seq.training.distributed import DistributedContext
from seq2seq.training.loss import sequence_loss
from seq2seq.training.matmul_precision import (
    DTYPES,
    choose_matmul_dtype,
    decision_key,
    matmul_dtype,
    measures_matmul_precision,
)
from seq2seq.training.memory import reuse_freed_memory
from seq2seq.training.optim import build_optimizer, build_scheduler, clip_gradients


def teacher_forcing_ratio(cfg: TrainConfig, step: int) -> float:
    """The ratio of decoder steps fed the gold token at training step `step` (scheduled sampling)."""
    if cfg.teacher_forcing_schedule == "linear":
        progress = min(1.0, step / cfg.teacher_forcing_decay_steps)
        return cfg.teacher_forcing_ratio - (cfg.teacher_forcing_ratio - cfg.teacher_forcing_min) * progress
    if cfg.teacher_forcing_schedule == "inverse_sigmoid":
        k = cfg.teacher_forcing_k
        decay = k / (k + math.exp(min(step / k, 700.0)))
        return max(cfg.teacher_forcing_min, cfg.teacher_forcing_ratio * decay)
    return cfg.teacher_forcing_ratio


@dataclass
class StepResult:
    """What one update did. `loss` is summed over the step's target tokens (all ranks under DDP)."""

    loss: float
    tokens: int
    grad_norm: float  # before clipping
    teacher_forcing_ratio: float
    applied: bool  # False: a non-finite loss or gradient, the weights were left as they were
    overflow: bool  # fp16: the loss scale was too high (the scaler lowers it; not a bad step)


class TrainStep:
    """Owns the optimizer, schedule, gradient scaler and teacher-forcing coin of one model; `step(batch, n)` updates.

    `train_model` is what the forward pass calls: the model itself, or its DistributedDataParallel wrapper,
    which averages the gradients over ranks during `backward()`.

    With `train.matmul_precision=auto` on a CPU with native bf16, the first `step` first measures fp32
    against bf16 products on its batch (`seq2seq.model.precision`), from the cache file `matmul_cache` when it
    holds the answer; rank 0 measures and every rank takes its choice.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        device: torch.device,
        dist: DistributedContext | None = None,
        train_model: nn.Module | None = None,
        matmul_cache: Path | None = None,
    ) -> None:
        self.model, self.cfg, self.device = model, cfg, device
        self.dist = dist or DistributedContext()
        self.train_model = train_model if train_model is not None else model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, cfg)
        self.schedule = build_scheduler(self.optimizer, cfg)
        self.autocast_dtype = autocast_dtype(cfg.precision, device)
        # fp16 needs loss scaling so small gradients do not underflow; for fp32/bf16 the scaler is a no-op
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.generator = torch.Generator().manual_seed(cfg.seed)  # teacher-forcing coin flips
        set_matmul_dtype(model, matmul_dtype(cfg.matmul_precision, cfg.precision, device))
        self.matmul_pending = measures_matmul_precision(cfg.matmul_precision, cfg.precision, device)
        self.matmul_cache = matmul_cache
        if cfg.reuse_freed_memory:
            reuse_freed_memory()  # the (tokens, vocab) tensors of each step reuse the last step's memory

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision for the training forward pass (`train.precision`); fp32: nothing."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @property
    def matmul_precision(self) -> str:
        """The decoder's and output layer's training products: fp32, bf16, or auto's choice still to measure."""
        if self.matmul_pending:
            return "auto (measured at the first step)"
        dtype = self.model.decoder.output.matmul_dtype
        return next(name for name, known in DTYPES.items() if known == dtype)

    def step(self, batch: Batch, step: int) -> StepResult:
        """One update on `batch` (on the device) at training step `step` (0-based, for the schedules)."""
        if self.matmul_pending:
            self.choose_matmul_dtype(batch)
        self.model.train()
        ratio = teacher_forcing_ratio(self.cfg, step)
        with self.autocast():
            logits = self.train_model(batch.src, batch.src_lengths, batch.tgt_in, ratio, self.generator)
        loss_sum = sequence_loss(logits, batch.tgt_out, self.cfg.label_smoothing)  # in fp32
        # The gradient is that of the mean loss per target token of the *global* batch. DDP averages the
        # ranks' gradients, so each rank divides its summed loss by (all ranks' tokens / world size).
        ntokens, loss = self.dist.sum(batch.num_tgt_tokens, float(loss_sum.detach()))
        ntokens = int(ntokens)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss_sum / (ntokens / self.dist.world_size)).backward()
        self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the scaled one
        grad_norm = clip_gradients(self.params, self.cfg)
        finite = math.isfinite(grad_norm) and math.isfinite(loss)
        overflow = self.scaler.is_enabled() and math.isfinite(loss) and not math.isfinite(grad_norm)
        if finite:
            self.scaler.step(self.optimizer)  # optimizer.step(), unless fp16 found inf/nan gradients
        self.scaler.update()  # fp16 overflow: lowers the loss scale, the step was skipped
        self.schedule.after_update()
        return StepResult(loss, ntokens, grad_norm, ratio, applied=finite, overflow=overflow)

    def choose_matmul_dtype(self, batch: Batch) -> None:
        """auto: time fp32 against bf16 products on `batch` (rank 0; cached per machine) and take the faster."""
        self.matmul_pending = False
        decision = None
        if self.dist.is_main:
            shape = (batch.src.size(0), batch.src.size(1), batch.tgt_in.size(1))
            key = decision_key(self.model, self.cfg.batch_tokens)
            decision = choose_matmul_dtype(lambda name: self.time_pass(batch, name), key, shape, self.matmul_cache)
        choice = self.dist.broadcast(None if decision is None else decision.choice)
        set_matmul_dtype(self.model, DTYPES[choice])

    def time_pass(self, batch: Batch, name: str) -> float:
        """Seconds for one forward and backward pass (no update) on `batch` with `name` (fp32|bf16) products.
        The random state is put back afterwards, so measuring changes nothing of the training that follows."""
        set_matmul_dtype(self.model, DTYPES[name])
        self.model.train()
        with torch.random.fork_rng(devices=[]):
            start = time.perf_counter()
            ratio = teacher_forcing_ratio(self.cfg, 0)
            logits = self.model(batch.src, batch.src_lengths, batch.tgt_in, ratio, torch.Generator().manual_seed(0))
            sequence_loss(logits, batch.tgt_out, self.cfg.label_smoothing).backward()
            elapsed = time.perf_counter() - start
        self.optimizer.zero_grad(set_to_none=True)
        return elapsed

    def state_dict(self) -> dict[str, Any]:
        """Optimizer, schedule and gradient-scaler states (the checkpoint's keys)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),  # fp16 loss scale; empty otherwise
        }

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(payload["optimizer"])
        self.schedule.load_state_dict(payload.get("scheduler"))
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
