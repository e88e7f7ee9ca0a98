"""The training loop: batches in, gradients clipped, validation BLEU out, checkpoints written.

`train(config, run_dir)` is the whole run, usable without Hydra:
data -> tokenizer -> model -> steps with periodic validation -> test scoring of
the best checkpoint -> `results.json`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from seq2seq import distributed
from seq2seq.checkpoint import average_state_dicts, load_checkpoint, model_from_checkpoint, save_checkpoint
from seq2seq.config import Config, ConfigError, TrainConfig
from seq2seq.corpus import ParallelCorpus, length_filter, load_corpus
from seq2seq.data import make_batch, token_batches
from seq2seq.distributed import DistributedContext, shard
from seq2seq.inference import best_strings, translate_sentences
from seq2seq.insight import InsightProbe
from seq2seq.metrics import score
from seq2seq.model import Seq2Seq, build_model, count_parameters
from seq2seq.tokenizer import EOS_ID, PAD_ID, Tokenizer, build_tokenizer

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available; use train.device=auto or cpu")
    return torch.device(name)


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


def sequence_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed token cross-entropy. logits: (batch, tgt_len, vocab); target: (batch, tgt_len), PAD ignored."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        target.reshape(-1),
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


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


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    if cfg.lr_scheduler == "plateau":  # stepped after each validation with its BLEU
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.lr_decay_factor, patience=cfg.lr_patience, min_lr=cfg.lr_min
        )
    if cfg.lr_scheduler == "warmup_decay":  # stepped every step: linear warm-up, then 1/sqrt(step) decay
        warmup = max(1, cfg.warmup_steps)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, math.sqrt(warmup / (s + 1)))
        )
    return None


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train_src: list[list[int]]
    train_tgt: list[list[int]]
    valid: ParallelCorpus
    test: ParallelCorpus


def prepare_data(config: Config, tokenizer: Tokenizer | None = None) -> PreparedData:
    """Load and clean the corpus, train/reuse SentencePiece (unless given one), encode and length-filter."""
    splits = load_corpus(config.data)
    train = splits["train"]
    if tokenizer is None:
        tokenizer = build_tokenizer(train.src, train.tgt, config.tokenizer)
    src_ids, tgt_ids = tokenizer.encode_src(train.src), tokenizer.encode_tgt(train.tgt)
    kept, dropped = length_filter(
        [len(s) for s in src_ids], [len(t) for t in tgt_ids], config.data.max_length, config.data.max_length_ratio
    )
    log.info(
        "train: %d pairs after length filtering (dropped %d over data.max_length=%d, %d over data.max_length_ratio=%g)",
        len(kept),
        dropped.get("too_long", 0),
        config.data.max_length,
        dropped.get("bad_ratio", 0),
        config.data.max_length_ratio,
    )
    if not kept:
        raise ValueError(
            "no training pairs left after length filtering; raise data.max_length or data.max_length_ratio"
        )
    return PreparedData(
        tokenizer, [src_ids[i] for i in kept], [tgt_ids[i] for i in kept], splits["valid"], splits["test"]
    )


def epoch_batches(
    src_lengths: list[int], tgt_lengths: list[int], batch_tokens: int, seed: int, epoch: int
) -> list[list[int]]:
    """One epoch's shuffled, length-bucketed batches (lists of pair indices), a function of seed and epoch only."""
    return token_batches(src_lengths, tgt_lengths, batch_tokens, random.Random(seed * 1_000_003 + epoch))


@dataclass
class TrainingState:
    """Counters that, with the weights, optimizer and RNG states, let a run resume exactly where it stopped."""

    step: int = 0
    epoch: int = 0  # the current epoch (1-based once training has started)
    epoch_step: int = 0  # batches of the current epoch already trained on (0: the epoch is done or not begun)
    best_bleu: float = -1.0
    best_step: int = 0
    bad_validations: int = 0  # validations since the last BLEU improvement (early stopping)
    skipped_steps: int = 0  # updates skipped for a non-finite loss or gradient, in all
    bad_steps_in_a_row: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # one row per validation


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM stopped training at a step boundary; `last.pt` holds the state to resume from."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


class TrainingDiverged(RuntimeError):
    """Too many non-finite steps in a row; `last.pt` holds the last good weights."""


class Trainer:
    """Owns the model, optimizer and logging of one run; `fit()` trains, `test()` scores.

    Under torchrun (`dist.world_size > 1`) every rank owns a replica wrapped in
    DistributedDataParallel; rank 0 alone validates, logs and writes checkpoints.
    """

    def __init__(
        self, config: Config, run_dir: Path, data: PreparedData, dist: DistributedContext | None = None
    ) -> None:
        self.config = config
        self.cfg = config.train
        self.dist = dist or DistributedContext()
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.data = data
        self.device = resolve_device(self.cfg.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)  # one GPU per process
        elif self.dist.enabled and self.device.type != "cpu":
            raise ConfigError(f"distributed training runs on CPUs (gloo) or CUDA GPUs (nccl), not {self.device}")
        tok = data.tokenizer
        self.model: Seq2Seq = build_model(config.model, tok.src_vocab_size, tok.tgt_vocab_size).to(self.device)
        # what the training step calls: the model itself, or a DDP wrapper that averages gradients over ranks
        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, self.cfg)
        self.scheduler = make_scheduler(self.optimizer, self.cfg)
        self.autocast_dtype = autocast_dtype(self.cfg.precision, self.device)
        # fp16 needs loss scaling so small gradients do not underflow; for fp32/bf16 the scaler is a no-op
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.cfg.precision == "fp16")
        self.generator = torch.Generator().manual_seed(self.cfg.seed)  # teacher-forcing coin flips
        self.state = TrainingState()
        self.writer: Any = SummaryWriter(log_dir=str(self.run_dir)) if self.dist.is_main else _NullWriter()
        self.progress = sys.stderr.isatty() and self.dist.is_main
        lengths = [len(s) for s in data.train_src], [len(t) for t in data.train_tgt]
        self.train_lengths = lengths
        self.tokens_per_sec: list[float] = []  # one entry per log window (train.log_every steps)
        limit = self.cfg.max_valid_sentences  # validate on (the first `limit` of) the validation set
        self.valid = ParallelCorpus(data.valid.src[:limit], data.valid.tgt[:limit])
        self.valid_ids = (tok.encode_src(self.valid.src), tok.encode_tgt(self.valid.tgt))  # encoded once
        n = self.cfg.insight_sentences  # the same sentences at every validation, so pictures compare over time
        self.insight = (
            InsightProbe(config.model, tok, self.valid_ids[0][:n], self.valid_ids[1][:n], self.device)
            if self.cfg.insight and self.dist.is_main
            else None
        )
        log.info(
            "model: %s, %d parameters, on %s, precision %s%s",
            config.model.cell,
            count_parameters(self.model),
            self.device,
            self.cfg.precision,
            f", rank 0 of {self.dist.world_size} processes" if self.dist.enabled else "",
        )

    def global_batches(self, epoch: int) -> list[list[list[int]]]:
        """The epoch's training steps; step i holds one batch (a list of pair indices) per rank.

        The order depends only on the seed and the epoch number, so a resumed run rebuilds it
        and skips the steps it has already taken; `train.batch_tokens` is per process.
        """
        batches = epoch_batches(*self.train_lengths, self.cfg.batch_tokens, self.cfg.seed, epoch)
        steps = shard(batches, self.dist.world_size)
        if not steps:
            raise ConfigError(
                f"{len(batches)} batches of train.batch_tokens={self.cfg.batch_tokens} cannot feed "
                f"{self.dist.world_size} processes; lower train.batch_tokens"
            )
        return steps

    # ----------------------------------------------------------------- training
    def fit(self) -> TrainingState:
        """Train until a limit, early stopping, or a signal (SIGINT/SIGTERM: `last.pt`, then `TrainingInterrupted`)."""
        with _stop_on_signals() as stop:
            return self._fit(stop)

    def _fit(self, stop: dict[str, int]) -> TrainingState:
        cfg, state = self.cfg, self.state
        start = time.monotonic()
        stop_reason = self.limit_reached(start, epoch_done=state.epoch_step == 0 and state.epoch > 0)
        window_tokens, window_start, window_loss = 0, time.monotonic(), 0.0
        bar = tqdm(total=cfg.max_steps, initial=state.step, desc="training", unit="step", disable=not self.progress)
        while stop_reason is None:
            if state.epoch_step == 0:
                state.epoch += 1
            batches = self.global_batches(state.epoch)
            for step_batches in batches[state.epoch_step :]:
                indices = step_batches[self.dist.rank]  # this rank's shard of the step
                batch = make_batch([self.data.train_src[i] for i in indices], [self.data.train_tgt[i] for i in indices])
                loss, ntokens, grad_norm, ratio = self.train_step(batch.to(self.device))
                state.step += 1
                state.epoch_step += 1
                if state.epoch_step == len(batches):
                    state.epoch_step = 0  # epoch complete
                if math.isfinite(loss):
                    window_tokens += ntokens
                    window_loss += loss
                bar.update(1)
                if state.step % cfg.log_every == 0 and window_tokens:
                    elapsed = time.monotonic() - window_start
                    self.tokens_per_sec.append(window_tokens / max(elapsed, 1e-9))
                    self.log_train(window_loss / window_tokens, grad_norm, ratio, self.tokens_per_sec[-1])
                    bar.set_postfix(loss=f"{window_loss / window_tokens:.3f}")
                    window_tokens, window_start, window_loss = 0, time.monotonic(), 0.0
                if state.bad_steps_in_a_row > cfg.max_bad_steps:
                    self.save_last()
                    bar.close()
                    raise TrainingDiverged(
                        f"{state.bad_steps_in_a_row} steps in a row had a non-finite loss or gradient "
                        f"(train.max_bad_steps={cfg.max_bad_steps}); the last good weights are in "
                        f"{self.ckpt_dir / 'last.pt'}. Try a lower train.lr or train.clip_grad_norm."
                    )
                if state.step % cfg.validate_every == 0 and self.validate_and_checkpoint(start):
                    stop_reason = f"early stopping: no BLEU gain in {cfg.early_stopping_patience} validations"
                # a signal or the time limit seen by any rank stops every rank at this same step
                signum, time_up = self.dist.max(stop.get("signum", 0), self.limit_reached(start, False) is not None)
                if signum and not stop:
                    stop["signum"] = int(signum)
                if stop:  # after any due validation, so a resumed run replays exactly
                    self.save_last()
                    bar.close()
                    name = signal.Signals(stop["signum"]).name
                    raise TrainingInterrupted(
                        stop["signum"],
                        f"{name}: stopped at step {state.step} (epoch {state.epoch}, batch {state.epoch_step}); "
                        f"state saved to {self.ckpt_dir / 'last.pt'}; continue with train.resume=auto "
                        f"hydra.run.dir={self.run_dir}",
                    )
                if stop_reason is None and time_up:
                    stop_reason = self.limit_reached(start, epoch_done=False) or "a time limit reached on another rank"
                if stop_reason:
                    break
            if stop_reason is None:
                stop_reason = self.limit_reached(start, epoch_done=True)
        bar.close()
        if not state.history or state.history[-1]["step"] != state.step:
            self.validate_and_checkpoint(start)
        log.info(
            "stopped after %d steps, %d epochs (%s); best val BLEU %.2f at step %d",
            state.step,
            state.epoch,
            stop_reason,
            state.best_bleu,
            state.best_step,
        )
        return state

    def limit_reached(self, start: float, epoch_done: bool) -> str | None:
        cfg, state = self.cfg, self.state
        if cfg.max_steps is not None and state.step >= cfg.max_steps:
            return f"train.max_steps={cfg.max_steps} reached"
        if cfg.max_minutes is not None and time.monotonic() - start >= cfg.max_minutes * 60:
            return f"train.max_minutes={cfg.max_minutes} reached"
        if epoch_done and cfg.max_epochs is not None and state.epoch >= cfg.max_epochs:
            return f"train.max_epochs={cfg.max_epochs} reached"
        return None

    def autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision for the training forward pass (`train.precision`); fp32: nothing."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batch: Any) -> tuple[float, int, float, float]:
        """One update; returns (summed loss, target tokens, pre-clip grad norm, teacher-forcing ratio).

        Under DDP the loss and token count are those of the whole step, summed over ranks.
        """
        self.model.train()
        ratio = teacher_forcing_ratio(self.cfg, self.state.step)
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
        overflow = self.scaler.is_enabled() and math.isfinite(loss) and not math.isfinite(grad_norm)
        if math.isfinite(grad_norm) and math.isfinite(loss):
            self.scaler.step(self.optimizer)  # optimizer.step(), unless fp16 found inf/nan gradients
            self.state.bad_steps_in_a_row = 0
        elif overflow:  # fp16: the loss scale was too high; update() lowers it, the step is skipped
            log.debug("step %d: fp16 gradient overflow at loss scale %g", self.state.step + 1, self.scaler.get_scale())
        else:  # skip the update: the weights stay the last good ones
            self.state.skipped_steps += 1
            self.state.bad_steps_in_a_row += 1
            log.warning(
                "step %d: non-finite %s, update skipped (%d in a row)",
                self.state.step + 1,
                "loss" if not math.isfinite(loss) else "gradient norm",
                self.state.bad_steps_in_a_row,
            )
            self.writer.add_scalar("train/skipped_steps", self.state.skipped_steps, self.state.step + 1)
        self.scaler.update()
        if self.cfg.lr_scheduler == "warmup_decay":
            self.scheduler.step()
        return loss, ntokens, grad_norm, ratio

    def log_train(self, loss: float, grad_norm: float, ratio: float, tokens_per_sec: float) -> None:
        step, lr = self.state.step, self.optimizer.param_groups[0]["lr"]
        for tag, value in (
            ("train/loss", loss),
            ("train/lr", lr),
            ("train/grad_norm", grad_norm),
            ("train/teacher_forcing_ratio", ratio),
            ("train/tokens_per_sec", tokens_per_sec),
        ):
            self.writer.add_scalar(tag, value, step)
        if not self.progress:
            log.info(
                "step %d  epoch %d  loss %.4f  lr %.2e  grad_norm %.2f  teacher_forcing_ratio %.2f  %.0f tok/s",
                step,
                self.state.epoch,
                loss,
                lr,
                grad_norm,
                ratio,
                tokens_per_sec,
            )

    # --------------------------------------------------------------- validation
    @torch.no_grad()
    def validation_loss(self) -> tuple[float, list[str]]:
        """Teacher-forced cross-entropy per target token (no label smoothing), and the teacher-forced outputs.

        The outputs are the argmax at each position given the *gold* prefix, cut at the first EOS:
        what the model would write if it never saw its own mistakes (see `validate`).
        """
        self.model.eval()
        src, tgt = self.valid_ids
        total, tokens = 0.0, 0
        forced: list[list[int]] = [[] for _ in src]
        for indices in token_batches([len(s) for s in src], [len(t) for t in tgt], self.cfg.batch_tokens):
            batch = make_batch([src[i] for i in indices], [tgt[i] for i in indices]).to(self.device)
            logits = self.model(batch.src, batch.src_lengths, batch.tgt_in)  # (batch, tgt_len, vocab)
            total += float(sequence_loss(logits, batch.tgt_out))
            tokens += batch.num_tgt_tokens
            predictions = logits.argmax(dim=-1).masked_fill(batch.tgt_out == PAD_ID, EOS_ID).tolist()
            for i, row in zip(indices, predictions):
                forced[i] = row[: row.index(EOS_ID)] if EOS_ID in row else row
        return total / max(tokens, 1), self.data.tokenizer.decode_tgt(forced)

    def validate(self, start: float) -> dict[str, float]:
        """Rank 0: score the validation set and log it (TensorBoard, samples, insight); returns the history row.

        Exposure bias made visible: `teacher_forced_bleu` scores the model fed the gold prefix (as in
        training), `bleu` the model fed its own greedy output (as at inference); their difference,
        `exposure_bias_gap`, is what teacher forcing hides.
        """
        state, valid = self.state, self.valid
        loss, forced = self.validation_loss()
        hyps = self.greedy_validation(self.model, self.data.tokenizer)
        scores = score(hyps, valid.tgt)
        teacher_forced_bleu = score(forced, valid.tgt).bleu
        row = {
            "step": state.step,
            "epoch": state.epoch,
            "minutes": round((time.monotonic() - start) / 60, 3),
            "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)),
            "bleu": scores.bleu,
            "chrf": scores.chrf,
            "teacher_forced_bleu": teacher_forced_bleu,
            "exposure_bias_gap": teacher_forced_bleu - scores.bleu,
        }
        for key in ("loss", "perplexity", "bleu", "chrf", "teacher_forced_bleu", "exposure_bias_gap"):
            self.writer.add_scalar(f"valid/{key}", row[key], state.step)
        self.writer.add_text("valid/samples", self.samples_markdown(valid, hyps), state.step)
        if self.insight is not None:
            self.insight.log(self.writer, self.model, state.step)
        self.writer.flush()
        log.info(
            "validation at step %d: loss %.4f  perplexity %.2f  BLEU %.2f  chrF %.2f  "
            "teacher-forced BLEU %.2f (exposure bias gap %.2f)",
            state.step,
            loss,
            row["perplexity"],
            scores.bleu,
            scores.chrf,
            teacher_forced_bleu,
            row["exposure_bias_gap"],
        )
        for i in range(min(self.cfg.num_samples, len(hyps))):
            log.info("  source:     %s\n  reference:  %s\n  hypothesis: %s", valid.src[i], valid.tgt[i], hyps[i])
        return row

    def greedy_validation(self, model: Seq2Seq, tokenizer: Tokenizer) -> list[str]:
        """`model`'s greedy translations of the validation sources: what validation BLEU scores."""
        greedy = replace(self.config.decode, beam_size=1, nbest=1)
        hypotheses = translate_sentences(model, tokenizer, self.valid.src, greedy, self.device, progress=self.progress)
        return best_strings(tokenizer, hypotheses)

    def validate_and_checkpoint(self, start: float) -> bool:
        """Validate (rank 0), share the result, save last.pt/best.pt; True when early stopping says stop.

        Every rank applies the same row, so the lr schedule and early stopping agree across ranks.
        """
        cfg, state = self.cfg, self.state
        row = self.dist.broadcast(self.validate(start) if self.dist.is_main else None)
        state.history.append(row)
        improved = row["bleu"] > state.best_bleu
        if improved:
            state.best_bleu, state.best_step, state.bad_validations = row["bleu"], state.step, 0
            log.info("new best validation BLEU %.2f at step %d", row["bleu"], state.step)
        else:
            state.bad_validations += 1
        if cfg.lr_scheduler == "plateau":
            self.scheduler.step(row["bleu"])
        payload = self.checkpoint_payload()
        if self.dist.is_main:
            save_checkpoint(self.ckpt_dir / "last.pt", payload)
            if improved:
                save_checkpoint(self.ckpt_dir / "best.pt", payload)
            if cfg.average_checkpoints >= 2:
                self.save_step_checkpoint(payload)
        patience = cfg.early_stopping_patience
        return patience is not None and state.bad_validations >= patience

    def step_checkpoints(self) -> list[Path]:
        """`checkpoints/step_{step}.pt` (written when `train.average_checkpoints` >= 2), oldest first."""
        paths = [p for p in self.ckpt_dir.glob("step_*.pt") if p.stem.removeprefix("step_").isdigit()]
        return sorted(paths, key=self.checkpoint_step)

    @staticmethod
    def checkpoint_step(path: Path) -> int:
        return int(path.stem.removeprefix("step_"))

    def save_step_checkpoint(self, payload: dict[str, Any]) -> None:
        """Rank 0: save this validation's `step_{step}.pt`; keep the last `train.average_checkpoints` of them."""
        save_checkpoint(self.ckpt_dir / f"step_{self.state.step}.pt", payload)
        paths = self.step_checkpoints()
        # a step beyond this one can only be left by an abandoned run that this one resumed from an earlier checkpoint
        keep = [p for p in paths if self.checkpoint_step(p) <= self.state.step][-self.cfg.average_checkpoints :]
        for path in paths:
            if path not in keep:
                path.unlink(missing_ok=True)

    def samples_markdown(self, valid: ParallelCorpus, hyps: list[str]) -> str:
        rows = ["| source | reference | hypothesis |", "| --- | --- | --- |"]
        for i in range(min(self.cfg.num_samples, len(hyps))):
            cells = (text.replace("|", "\\|") for text in (valid.src[i], valid.tgt[i], hyps[i]))
            rows.append("| " + " | ".join(cells) + " |")
        return "\n".join(rows)

    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain values (loads with weights_only=True).

        Under DDP every rank must call this (it gathers each rank's RNG states); rank 0 saves it.
        """
        state = self.state
        rng = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "teacher_forcing": self.generator.get_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        rng_by_rank = self.dist.gather(rng)
        return {
            "model": self.model.state_dict(),
            "config": self.config.to_dict(),
            "tokenizer": self.data.tokenizer.to_dict(),
            "step": state.step,
            "epoch": state.epoch,
            "best_bleu": state.best_bleu,
            "train_state": asdict(state),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),  # fp16 loss scale; empty otherwise
            "rng": rng,
            "rng_by_rank": rng_by_rank,
            "world_size": self.dist.world_size,
        }

    def save_last(self) -> None:
        payload = self.checkpoint_payload()
        if self.dist.is_main:
            save_checkpoint(self.ckpt_dir / "last.pt", payload)

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint written by `checkpoint_payload`: weights, optimizer, scheduler, counters, RNGs."""
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler is not None and payload.get("scheduler") is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.state = TrainingState(**payload["train_state"])
        rng_by_rank = payload.get("rng_by_rank") or [payload["rng"]]
        saved_world = payload.get("world_size", 1)
        if saved_world != self.dist.world_size:
            # a step of the old run took `saved_world` batches; skip as many of this run's steps as that covers
            self.state.epoch_step = self.state.epoch_step * saved_world // self.dist.world_size
            log.warning(
                "the checkpoint was written by %d process(es), this run has %d: the epoch continues after "
                "the batches already seen, but dropout and teacher-forcing draws differ from an uninterrupted run",
                saved_world,
                self.dist.world_size,
            )
        rng = rng_by_rank[self.dist.rank] if self.dist.rank < len(rng_by_rank) else rng_by_rank[0]
        torch.set_rng_state(rng["torch"])
        random.setstate(_as_tuples(rng["python"]))
        self.generator.set_state(rng["teacher_forcing"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        log.info(
            "resumed at step %d (epoch %d, batch %d of it); best val BLEU so far %.2f",
            self.state.step,
            self.state.epoch,
            self.state.epoch_step,
            self.state.best_bleu,
        )

    # --------------------------------------------------------------------- test
    def average_checkpoints(self) -> dict[str, Any] | None:
        """Rank 0, after training: average the kept `step_*.pt` into `averaged.pt` and score it on the validation set.

        `averaged.pt` is the newest step checkpoint with its weights replaced by the average (so it is as
        self-contained as `best.pt`), plus `averaged_steps`. Its validation BLEU comes from the same greedy
        decoding as `validate`. Returns {"path", "steps", "bleu", "chrf"}, or None when
        `train.average_checkpoints` is off or there are fewer than two step checkpoints to average.
        """
        if self.cfg.average_checkpoints < 2:
            return None
        paths = self.step_checkpoints()[-self.cfg.average_checkpoints :]
        if len(paths) < 2:
            log.info("checkpoint averaging: %d validation checkpoint(s), nothing to average", len(paths))
            return None
        steps = [self.checkpoint_step(p) for p in paths]
        newest = load_checkpoint(paths[-1])
        weights = [load_checkpoint(p)["model"] for p in paths[:-1]] + [newest["model"]]
        path = self.ckpt_dir / "averaged.pt"
        save_checkpoint(path, {**newest, "model": average_state_dicts(weights), "averaged_steps": steps})
        model, tokenizer, _, _ = model_from_checkpoint(path, self.device)
        scores = score(self.greedy_validation(model, tokenizer), self.valid.tgt)  # as `validate` scores
        self.writer.add_scalar("valid/averaged_bleu", scores.bleu, self.state.step)
        log.info(
            "averaged steps %s into %s: validation BLEU %.2f  chrF %.2f (best single checkpoint: %.2f at step %d)",
            ", ".join(map(str, steps)),
            path,
            scores.bleu,
            scores.chrf,
            self.state.best_bleu,
            self.state.best_step,
        )
        return {"path": str(path), "steps": steps, "bleu": scores.bleu, "chrf": scores.chrf}

    def test(self, averaged: str | Path | None = None) -> dict[str, Any]:
        """Score `best.pt` on the test split with greedy and beam search (rank 0 only).

        With `averaged` (the path `average_checkpoints` wrote), that model is scored too, under "averaged".
        """
        results = self.test_checkpoint(self.ckpt_dir / "best.pt")
        if averaged is not None:
            results["averaged"] = self.test_checkpoint(Path(averaged))
        return results

    def test_checkpoint(self, path: Path) -> dict[str, Any]:
        """One checkpoint's test scores: {"greedy": {...}, "beam": {...}}."""
        model, tokenizer, _, _ = model_from_checkpoint(path, self.device)
        test = self.data.test
        results: dict[str, Any] = {}
        for name, beam in (("greedy", 1), ("beam", self.cfg.test_beam_size)):
            decode = replace(self.config.decode, beam_size=beam, nbest=1)
            start = time.monotonic()
            hyps = best_strings(
                tokenizer, translate_sentences(model, tokenizer, test.src, decode, self.device, progress=self.progress)
            )
            seconds = time.monotonic() - start
            scores = score(hyps, test.tgt)
            results[name] = {"beam_size": beam, **scores.to_dict(), "sentences_per_sec": round(len(hyps) / seconds, 1)}
            log.info(
                "test %s (%s, beam %d): BLEU %.2f  chrF %.2f  [%s]",
                path.name,
                name,
                beam,
                scores.bleu,
                scores.chrf,
                scores.bleu_signature,
            )
        return results


def train(config: Config, run_dir: Path) -> dict[str, Any]:
    """The whole run: returns (and writes to `run_dir/results.json`) the test scores and run summary.

    Under torchrun every rank calls this; rank 0's `run_dir` is used by all, and only rank 0
    tests and writes `results.json` (the other ranks return `{}` after training).
    """
    random.seed(config.train.seed)
    torch.manual_seed(config.train.seed)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    begin = time.monotonic()
    ctx = distributed.setup(resolve_device(config.train.device))
    try:
        run_dir = Path(ctx.broadcast(str(run_dir)))
        run_dir.mkdir(parents=True, exist_ok=True)
        resume = find_resume_checkpoint(config, run_dir)
        payload = load_checkpoint(resume) if resume is not None else None
        if payload is not None:
            check_resume_config(payload["config"], config, resume)
        data = prepare_data(config, Tokenizer.from_dict(payload["tokenizer"]) if payload is not None else None)
        trainer = Trainer(config, run_dir, data, ctx)
        if ctx.enabled:  # same initial weights everywhere (same seed), different dropout masks per rank
            torch.manual_seed(config.train.seed + 7919 * ctx.rank)
        if payload is not None:
            trainer.restore(payload)
        fit_start = time.monotonic()
        state = trainer.fit()
        train_minutes = (time.monotonic() - fit_start) / 60
    finally:
        distributed.teardown()
    if not ctx.is_main:
        return {}
    averaged = trainer.average_checkpoints()  # None unless train.average_checkpoints >= 2
    test = trainer.test(averaged["path"] if averaged else None)
    trainer.writer.close()
    valid = {"best_bleu": state.best_bleu, "best_step": state.best_step, "history": state.history}
    # the test model, the checkpoint to translate with: best.pt, or averaged.pt when its validation BLEU is higher
    checkpoint = (trainer.ckpt_dir / "best.pt").resolve()
    if averaged is not None:
        valid.update(averaged_bleu=averaged["bleu"], averaged_steps=averaged["steps"])
        if averaged["bleu"] > state.best_bleu:
            checkpoint = Path(averaged["path"]).resolve()
        log.info("test model: %s", checkpoint)
    # median over the log windows (the first one, with warm-up, left out when there are others)
    windows = trainer.tokens_per_sec[1:] or trainer.tokens_per_sec or [0.0]
    results = {
        "test": test,
        "valid": valid,
        "train": {
            "steps": state.step,
            "epochs": state.epoch,
            "minutes": round(train_minutes, 2),
            "total_minutes": round((time.monotonic() - begin) / 60, 2),
            "parameters": count_parameters(trainer.model),
            "tokens_per_sec": round(statistics.median(windows), 1),
            "device": str(trainer.device),
            "precision": config.train.precision,
            "processes": ctx.world_size,
        },
        "checkpoint": str(checkpoint),
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log.info("results written to %s", run_dir / "results.json")
    return results


# ---------------------------------------------------------------------- resume
RESUME_MUST_MATCH = ("model.", "tokenizer.")  # what a resumed run may not change
RESUME_MAY_DIFFER = ("tokenizer.cache_dir", "train.resume")


def find_resume_checkpoint(config: Config, run_dir: Path) -> Path | None:
    """`train.resume`: a checkpoint path, `auto` (`run_dir/checkpoints/last.pt` if it exists), or null."""
    resume = config.train.resume
    if resume is None:
        return None
    if resume == "auto":
        last = run_dir / "checkpoints" / "last.pt"
        if last.is_file():
            return last
        log.info("train.resume=auto: no %s yet, starting a new run", last)
        return None
    path = Path(resume).expanduser()
    if not path.is_file():
        raise ConfigError(f"train.resume={resume!r}: no such checkpoint file")
    return path


def check_resume_config(saved: dict[str, Any], config: Config, path: Path) -> None:
    """Refuse to resume when the model or tokenizer settings differ; log the training-time keys that do."""
    before, after = _flatten(saved), _flatten(config.to_dict())
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    changed = [k for k in changed if k not in RESUME_MAY_DIFFER]
    refused = [k for k in changed if k.startswith(RESUME_MUST_MATCH)]
    if refused:
        details = ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in refused)
        raise ConfigError(f"cannot resume from {path}: the model or tokenizer would change ({details})")
    if changed:
        log.info(
            "resuming from %s with changed settings: %s",
            path,
            ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed),
        )
    else:
        log.info("resuming from %s", path)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _as_tuples(value: Any) -> Any:
    """`random.setstate` wants tuples; a checkpoint round trip may hand back lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


@contextmanager
def _stop_on_signals() -> Iterator[dict[str, int]]:
    """While training, SIGINT/SIGTERM only set a flag; the loop stops at the next step boundary."""
    stop: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop:  # a second signal: stop now
            raise KeyboardInterrupt
        stop["signum"] = signum
        log.warning("%s received: stopping after the current step", signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _NullWriter:
    """Stands in for the SummaryWriter on ranks other than 0: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """`train.precision` -> the autocast dtype (None for fp32), refusing combinations that cannot work."""
    if precision == "fp32":
        return None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.precision={precision} needs a CPU or CUDA device, not {device}; use fp32")
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.precision=bf16: this GPU has no bfloat16; use fp16 or fp32")
        native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
        if device.type == "cpu" and not native():
            log.warning("train.precision=bf16: oneDNN reports no native bf16 on this CPU; expect it to be slow")
        return torch.bfloat16
    if device.type == "cpu":
        log.warning("train.precision=fp16 on a CPU is slow; CPUs' mixed precision is bf16")
    return torch.float16
