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
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from seq2seq.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from seq2seq.config import Config, ConfigError, TrainConfig
from seq2seq.corpus import ParallelCorpus, length_filter, load_corpus
from seq2seq.data import make_batch, token_batches
from seq2seq.inference import best_strings, translate_sentences
from seq2seq.insight import InsightProbe
from seq2seq.metrics import score
from seq2seq.model import Seq2Seq, build_model, count_parameters
from seq2seq.tokenizer import PAD_ID, Tokenizer, build_tokenizer

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
    """Owns the model, optimizer and logging of one run; `fit()` trains, `test()` scores."""

    def __init__(self, config: Config, run_dir: Path, data: PreparedData) -> None:
        self.config = config
        self.cfg = config.train
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.data = data
        self.device = resolve_device(self.cfg.device)
        tok = data.tokenizer
        self.model: Seq2Seq = build_model(config.model, tok.src_vocab_size, tok.tgt_vocab_size).to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, self.cfg)
        self.scheduler = make_scheduler(self.optimizer, self.cfg)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)  # teacher-forcing coin flips
        self.state = TrainingState()
        self.writer = SummaryWriter(log_dir=str(self.run_dir))
        self.progress = sys.stderr.isatty()
        self.tokens_per_sec: list[float] = []  # one entry per log window (train.log_every steps)
        limit = self.cfg.max_valid_sentences  # validate on (the first `limit` of) the validation set
        self.valid = ParallelCorpus(data.valid.src[:limit], data.valid.tgt[:limit])
        self.valid_ids = (tok.encode_src(self.valid.src), tok.encode_tgt(self.valid.tgt))  # encoded once
        n = self.cfg.insight_sentences  # the same sentences at every validation, so pictures compare over time
        self.insight = (
            InsightProbe(config.model, tok, self.valid_ids[0][:n], self.valid_ids[1][:n], self.device)
            if self.cfg.insight
            else None
        )
        log.info("model: %s, %d parameters, on %s", config.model.cell, count_parameters(self.model), self.device)

    # ----------------------------------------------------------------- training
    def fit(self) -> TrainingState:
        """Train until a limit, early stopping, or a signal (SIGINT/SIGTERM: `last.pt`, then `TrainingInterrupted`)."""
        with _stop_on_signals() as stop:
            return self._fit(stop)

    def _fit(self, stop: dict[str, int]) -> TrainingState:
        cfg, state = self.cfg, self.state
        lengths_src = [len(s) for s in self.data.train_src]
        lengths_tgt = [len(t) for t in self.data.train_tgt]
        start = time.monotonic()
        stop_reason = self.limit_reached(start, epoch_done=state.epoch_step == 0 and state.epoch > 0)
        window_tokens, window_start, window_loss = 0, time.monotonic(), 0.0
        bar = tqdm(total=cfg.max_steps, initial=state.step, desc="training", unit="step", disable=not self.progress)
        while stop_reason is None:
            if state.epoch_step == 0:
                state.epoch += 1
            # The epoch's batch order depends only on the seed and the epoch number, so a resumed run
            # rebuilds it and skips the batches it has already trained on.
            rng = random.Random(cfg.seed * 1_000_003 + state.epoch)
            batches = token_batches(lengths_src, lengths_tgt, cfg.batch_tokens, rng)
            for indices in batches[state.epoch_step :]:
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
                    raise TrainingDiverged(
                        f"{state.bad_steps_in_a_row} steps in a row had a non-finite loss or gradient "
                        f"(train.max_bad_steps={cfg.max_bad_steps}); the last good weights are in "
                        f"{self.ckpt_dir / 'last.pt'}. Try a lower train.lr or train.clip_grad_norm."
                    )
                if state.step % cfg.validate_every == 0 and self.validate_and_checkpoint(start):
                    stop_reason = f"early stopping: no BLEU gain in {cfg.early_stopping_patience} validations"
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
                if stop_reason is None:
                    stop_reason = self.limit_reached(start, epoch_done=False)
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

    def train_step(self, batch: Any) -> tuple[float, int, float, float]:
        """One update; returns (summed loss, target tokens, pre-clip grad norm, teacher-forcing ratio)."""
        self.model.train()
        ratio = teacher_forcing_ratio(self.cfg, self.state.step)
        logits = self.model(batch.src, batch.src_lengths, batch.tgt_in, ratio, self.generator)
        ntokens = batch.num_tgt_tokens
        loss_sum = sequence_loss(logits, batch.tgt_out, self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        (loss_sum / ntokens).backward()
        grad_norm = clip_gradients(self.params, self.cfg)
        loss = float(loss_sum.detach())
        if math.isfinite(grad_norm) and math.isfinite(loss):
            self.optimizer.step()
            self.state.bad_steps_in_a_row = 0
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
    def validation_loss(self) -> tuple[float, int]:
        """Teacher-forced cross-entropy per target token (no label smoothing) and the token count."""
        self.model.eval()
        src, tgt = self.valid_ids
        total, tokens = 0.0, 0
        for indices in token_batches([len(s) for s in src], [len(t) for t in tgt], self.cfg.batch_tokens):
            batch = make_batch([src[i] for i in indices], [tgt[i] for i in indices]).to(self.device)
            logits = self.model(batch.src, batch.src_lengths, batch.tgt_in)
            total += float(sequence_loss(logits, batch.tgt_out))
            tokens += batch.num_tgt_tokens
        return total / max(tokens, 1), tokens

    def validate_and_checkpoint(self, start: float) -> bool:
        """Score the validation set, log it, save last.pt/best.pt; True when early stopping says stop."""
        cfg, state, valid = self.cfg, self.state, self.valid
        loss, _ = self.validation_loss()
        greedy = replace(self.config.decode, beam_size=1, nbest=1)
        hyps = best_strings(
            self.data.tokenizer,
            translate_sentences(
                self.model, self.data.tokenizer, valid.src, greedy, self.device, progress=self.progress
            ),
        )
        scores = score(hyps, valid.tgt)
        minutes = (time.monotonic() - start) / 60
        row = {
            "step": state.step,
            "epoch": state.epoch,
            "minutes": round(minutes, 3),
            "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)),
            "bleu": scores.bleu,
            "chrf": scores.chrf,
        }
        state.history.append(row)
        for key in ("loss", "perplexity", "bleu", "chrf"):
            self.writer.add_scalar(f"valid/{key}", row[key], state.step)
        self.writer.add_text("valid/samples", self.samples_markdown(valid, hyps), state.step)
        if self.insight is not None:
            self.insight.log(self.writer, self.model, state.step)
        self.writer.flush()
        improved = scores.bleu > state.best_bleu
        if improved:
            state.best_bleu, state.best_step, state.bad_validations = scores.bleu, state.step, 0
        else:
            state.bad_validations += 1
        log.info(
            "validation at step %d: loss %.4f  perplexity %.2f  BLEU %.2f  chrF %.2f%s",
            state.step,
            loss,
            row["perplexity"],
            scores.bleu,
            scores.chrf,
            "  (new best)" if improved else "",
        )
        for i in range(min(cfg.num_samples, len(hyps))):
            log.info("  source:     %s\n  reference:  %s\n  hypothesis: %s", valid.src[i], valid.tgt[i], hyps[i])
        if cfg.lr_scheduler == "plateau":
            self.scheduler.step(scores.bleu)
        payload = self.checkpoint_payload()
        save_checkpoint(self.ckpt_dir / "last.pt", payload)
        if improved:
            save_checkpoint(self.ckpt_dir / "best.pt", payload)
        patience = cfg.early_stopping_patience
        return patience is not None and state.bad_validations >= patience

    def samples_markdown(self, valid: ParallelCorpus, hyps: list[str]) -> str:
        rows = ["| source | reference | hypothesis |", "| --- | --- | --- |"]
        for i in range(min(self.cfg.num_samples, len(hyps))):
            cells = (text.replace("|", "\\|") for text in (valid.src[i], valid.tgt[i], hyps[i]))
            rows.append("| " + " | ".join(cells) + " |")
        return "\n".join(rows)

    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain values (loads with weights_only=True)."""
        state = self.state
        rng = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "teacher_forcing": self.generator.get_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
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
            "rng": rng,
        }

    def save_last(self) -> None:
        save_checkpoint(self.ckpt_dir / "last.pt", self.checkpoint_payload())

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint written by `checkpoint_payload`: weights, optimizer, scheduler, counters, RNGs."""
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler is not None and payload.get("scheduler") is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.state = TrainingState(**payload["train_state"])
        rng = payload["rng"]
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
    def test(self) -> dict[str, Any]:
        """Score `best.pt` on the test split with greedy and beam search."""
        best = self.ckpt_dir / "best.pt"
        model, tokenizer, _, _ = model_from_checkpoint(best, self.device)
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
                "test (%s, beam %d): BLEU %.2f  chrF %.2f  [%s]",
                name,
                beam,
                scores.bleu,
                scores.chrf,
                scores.bleu_signature,
            )
        return results


def train(config: Config, run_dir: Path) -> dict[str, Any]:
    """The whole run: returns (and writes to `run_dir/results.json`) the test scores and run summary."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    random.seed(config.train.seed)
    torch.manual_seed(config.train.seed)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    begin = time.monotonic()
    resume = find_resume_checkpoint(config, run_dir)
    payload = load_checkpoint(resume) if resume is not None else None
    if payload is not None:
        check_resume_config(payload["config"], config, resume)
    data = prepare_data(config, Tokenizer.from_dict(payload["tokenizer"]) if payload is not None else None)
    trainer = Trainer(config, run_dir, data)
    if payload is not None:
        trainer.restore(payload)
    fit_start = time.monotonic()
    state = trainer.fit()
    train_minutes = (time.monotonic() - fit_start) / 60
    test = trainer.test()
    trainer.writer.close()
    best = (trainer.ckpt_dir / "best.pt").resolve()
    # median over the log windows (the first one, with warm-up, left out when there are others)
    windows = trainer.tokens_per_sec[1:] or trainer.tokens_per_sec or [0.0]
    results = {
        "test": test,
        "valid": {"best_bleu": state.best_bleu, "best_step": state.best_step, "history": state.history},
        "train": {
            "steps": state.step,
            "epochs": state.epoch,
            "minutes": round(train_minutes, 2),
            "total_minutes": round((time.monotonic() - begin) / 60, 2),
            "parameters": count_parameters(trainer.model),
            "tokens_per_sec": round(statistics.median(windows), 1),
            "device": str(trainer.device),
        },
        "checkpoint": str(best),
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
