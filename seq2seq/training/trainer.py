"""The training loop: batches in, weights updated, validation BLEU out, checkpoints written.

`train(config, run_dir)` is the whole run, usable without Hydra: data -> tokenizer -> model -> steps
with periodic validation -> test scoring of the best checkpoint -> `results.json`. The `Trainer` does
the mechanism and hands each concern to its own piece: the update (`step.TrainStep`), scoring
(`validation`), logging (`tensorboard.Reporter`), checkpoints (`checkpoints.CheckpointSaver`) and when to
stop (`stopping`).
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from seq2seq.config import Config, ConfigError
from seq2seq.data.batches import epoch_batches, make_batch
from seq2seq.data.sampled import EpochPairs
from seq2seq.device import training_device
from seq2seq.model.seq2seq import Seq2Seq, build_model, count_parameters, freeze
from seq2seq.training.checkpoints import CheckpointSaver, restore_rng_states, rng_states
from seq2seq.training.distributed import DistributedContext, shard
from seq2seq.training.insight import InsightProbe
from seq2seq.training.matmul_precision import CACHE_FILE
from seq2seq.training.step import StepResult, TrainStep
from seq2seq.training.stopping import (
    EarlyStopping,
    TrainingDiverged,
    TrainingInterrupted,
    limit_reached,
    stop_on_signals,
)
from seq2seq.training.tensorboard import Reporter, Throughput
from seq2seq.training.validation import validate

if TYPE_CHECKING:  # for annotations only: no import at run time
    from seq2seq.data.prepare import PreparedData

log = logging.getLogger(__name__)


@dataclass
class TrainingState:
    """Counters that, with the weights, optimizer and RNG states, let a run resume exactly where it stopped."""

    step: int = 0
    epoch: int = 0  # the current epoch (1-based once training has started)
    epoch_step: int = 0  # batches of the current epoch already trained on (0: the epoch is done or not begun)
    skipped_steps: int = 0  # updates skipped for a non-finite loss or gradient, in all
    bad_steps_in_a_row: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # one row per validation


class Trainer:
    """Owns the model and the pieces of one run; `fit()` trains, `test()` scores.

    Under torchrun (`dist.world_size > 1`) every rank owns a replica wrapped in
    DistributedDataParallel; rank 0 alone validates, logs and writes checkpoints.
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        data: PreparedData,
        dist: DistributedContext | None = None,
        initial_weights: dict[str, Any] | None = None,
    ) -> None:
        """`initial_weights`: a state dict to start from (fine-tuning, `train.init_from`) instead of random ones."""
        self.config, self.cfg, self.data = config, config.train, data
        self.dist = dist or DistributedContext()
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.device = training_device(self.cfg.device, self.dist.local_rank if self.dist.enabled else None)
        tok = data.tokenizer
        self.model: Seq2Seq = build_model(config.model, tok.src_vocab_size, tok.tgt_vocab_size).to(self.device)
        if initial_weights is not None:
            self.model.load_state_dict(initial_weights)
        if self.cfg.freeze:  # before the optimizer is built over the parameters that still learn
            frozen = freeze(self.model, self.cfg.freeze)
            log.info(
                "train.freeze=%s: %d of %d parameters fixed", self.cfg.freeze, frozen, count_parameters(self.model)
            )
        train_model: nn.Module = self.model  # DDP averages the gradients over ranks
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = DistributedDataParallel(self.model, device_ids=ids)
        cache = Path(config.data.cache_dir).expanduser() / CACHE_FILE if config.data.cache_dir else None
        self.update = TrainStep(self.model, self.cfg, self.device, self.dist, train_model, matmul_cache=cache)
        self.state = TrainingState()
        self.early_stopping = EarlyStopping(self.cfg.early_stopping_patience)
        self.saver = CheckpointSaver(self.ckpt_dir, self.cfg.average_checkpoints, enabled=self.dist.is_main)
        self.progress = sys.stderr.isatty() and self.dist.is_main
        self.epoch_pairs = EpochPairs(data, config)  # the cached pairs, or each epoch's sampled segmentation
        self.throughput = Throughput()
        limit = self.cfg.max_valid_sentences  # validate on (the first `limit` of) the validation set
        self.valid = data.valid.head(limit)
        self.valid_ids = (tok.encode_src(self.valid.src), tok.encode_tgt(self.valid.tgt))  # encoded once
        n = self.cfg.insight_sentences  # the same sentences at every validation, so pictures compare over time
        insight = self.cfg.insight and self.dist.is_main
        probe = InsightProbe(tok, *(ids[:n] for ids in self.valid_ids), self.device, config.decode) if insight else None
        self.reporter = Reporter(self.run_dir, self.dist.is_main, self.progress, self.cfg.num_samples, probe)
        log.info(
            "model: %s, %d parameters, on %s, precision %s, decoder products %s%s",
            *(config.model.cell, count_parameters(self.model), self.device, self.cfg.precision),
            self.update.matmul_precision,
            f", rank 0 of {self.dist.world_size} processes" if self.dist.enabled else "",
        )

    def global_batches(self, epoch: int) -> list[list[np.ndarray]]:
        """The epoch's training steps; step i holds one batch (an array of pair indices) per rank.

        The order depends only on the seed and the epoch number (and so does a sampled segmentation's
        lengths), so a resumed run rebuilds it and skips the steps it has already taken;
        `train.batch_tokens` is per process.
        """
        batches = epoch_batches(*self.epoch_pairs.lengths(epoch), self.cfg.batch_tokens, self.cfg.seed, epoch)
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
        state, start = self.state, time.monotonic()
        self.throughput = Throughput()  # the first log window starts with training, not with the setup
        with stop_on_signals() as stop:
            stop_reason = self.limit_reached(start, epoch_done=state.epoch_step == 0 and state.epoch > 0)
            bar = tqdm(
                total=self.cfg.max_steps, initial=state.step, desc="training", unit="step", disable=not self.progress
            )
            while stop_reason is None:
                stop_reason = self.train_epoch(start, stop, bar)
            bar.close()
        if not state.history or state.history[-1]["step"] != state.step:
            self.validate_and_checkpoint(start)
        best = self.early_stopping
        log.info(
            "stopped after %d steps, %d epochs (%s); best val BLEU %.2f at step %d",
            *(state.step, state.epoch, stop_reason, best.best_bleu, best.best_step),
        )
        return state

    def train_epoch(self, start: float, stop: dict[str, int], bar: Any) -> str | None:
        """Train on the rest of the current epoch (or a new one); returns why training stops, None to go on."""
        cfg, state = self.cfg, self.state
        if state.epoch_step == 0:
            state.epoch += 1
        batches, train = self.global_batches(state.epoch), self.epoch_pairs.pairs(state.epoch)
        for step_batches in batches[state.epoch_step :]:
            indices = step_batches[self.dist.rank]  # this rank's shard of the step
            batch = make_batch(*train.pairs(indices))
            result = self.train_step(batch.to(self.device))
            state.epoch_step = (state.epoch_step + 1) % len(batches)  # 0: the epoch is complete
            bar.update(1)
            if state.step % cfg.log_every == 0 and self.throughput.tokens:
                loss, rate = self.throughput.close_window()
                self.reporter.train(
                    state.step, state.epoch, loss, self.update.lr, result.grad_norm, result.teacher_forcing_ratio, rate
                )
                bar.set_postfix(loss=f"{loss:.3f}")
            if state.bad_steps_in_a_row > cfg.max_bad_steps:
                bar.close()
                raise self.diverged()
            reason = None
            if state.step % cfg.validate_every == 0 and self.validate_and_checkpoint(start):
                reason = f"early stopping: no BLEU gain in {cfg.early_stopping_patience} validations"
            # a signal or the time limit seen by any rank stops every rank at this same step
            signum, time_up = self.dist.max(stop.get("signum", 0), self.limit_reached(start) is not None)
            if signum and not stop:
                stop["signum"] = int(signum)
            if stop:  # after any due validation, so a resumed run replays exactly
                bar.close()
                raise self.interrupted(stop["signum"])
            if reason is None and time_up:
                reason = self.limit_reached(start) or "a time limit reached on another rank"
            if reason:
                return reason
        return self.limit_reached(start, epoch_done=True)

    def limit_reached(self, start: float, epoch_done: bool = False) -> str | None:
        elapsed = time.monotonic() - start
        return limit_reached(self.cfg, self.state.step, self.state.epoch, elapsed, epoch_done)

    def train_step(self, batch: Any) -> StepResult:
        """One update (`TrainStep`) and its bookkeeping: step counters, skipped non-finite steps, throughput."""
        state = self.state
        result = self.update.step(batch, state.step)
        state.step += 1
        if math.isfinite(result.loss):
            self.throughput.add(result.tokens, result.loss)
        if result.applied:
            state.bad_steps_in_a_row = 0
        elif result.overflow:  # fp16: the loss scale was too high; the scaler lowered it, not a bad step
            log.debug("step %d: fp16 gradient overflow", state.step)
        else:  # the weights stay the last good ones
            state.skipped_steps += 1
            state.bad_steps_in_a_row += 1
            what = "loss" if not math.isfinite(result.loss) else "gradient norm"
            log.warning(
                "step %d: non-finite %s, update skipped (%d in a row)", state.step, what, state.bad_steps_in_a_row
            )
            self.reporter.scalar("train/skipped_steps", state.skipped_steps, state.step)
        return result

    def interrupted(self, signum: int) -> TrainingInterrupted:
        """Save `last.pt` and say how to continue."""
        self.save_last()
        state = self.state
        return TrainingInterrupted(
            signum,
            f"{signal.Signals(signum).name}: stopped at step {state.step} (epoch {state.epoch}, batch "
            f"{state.epoch_step}); state saved to {self.saver.last}; continue with train.resume=auto "
            f"hydra.run.dir={self.run_dir}",
        )

    def diverged(self) -> TrainingDiverged:
        """Save `last.pt` (the last good weights: bad steps never updated them) and say what to try."""
        self.save_last()
        cfg = self.cfg
        return TrainingDiverged(
            f"{self.state.bad_steps_in_a_row} steps in a row had a non-finite loss or gradient "
            f"(train.max_bad_steps={cfg.max_bad_steps}); the last good weights are in "
            f"{self.saver.last}. Try a lower train.lr or train.clip_grad_norm."
        )

    # --------------------------------------------------------------- validation
    def validate_and_checkpoint(self, start: float) -> bool:
        """Validate (rank 0), share the result, save last.pt/best.pt; True when early stopping says stop.

        Every rank applies the same row, so the lr schedule and early stopping agree across ranks.
        """
        state = self.state
        row = self.dist.broadcast(self.validate(start) if self.dist.is_main else None)
        state.history.append(row)
        improved = self.early_stopping.update(row["bleu"], state.step)
        if improved:
            log.info("new best validation BLEU %.2f at step %d", row["bleu"], state.step)
        self.update.schedule.after_validation(row["bleu"])
        self.saver.save(self.checkpoint_payload(), state.step, best=improved)
        return self.early_stopping.should_stop

    def validate(self, start: float) -> dict[str, float]:
        """Rank 0: score the validation set and report it; returns the history row."""
        state = self.state
        scores, hyps = validate(
            self.model, self.data.tokenizer, self.valid, self.valid_ids, self.config.decode,
            self.cfg.batch_tokens, self.device, self.progress,
        )  # fmt: skip
        row = {"step": state.step, "epoch": state.epoch, "minutes": round((time.monotonic() - start) / 60, 3), **scores}
        self.reporter.validation(state.step, row, self.valid, hyps, self.model)
        return row

    # ------------------------------------------------------------- checkpoints
    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain values (loads with weights_only=True).

        Under DDP every rank must call this (it gathers each rank's RNG states); rank 0 saves it.
        """
        state, best = self.state, self.early_stopping
        rng = rng_states(self.update.generator)
        return {
            "model": self.model.state_dict(),
            "config": self.config.to_dict(),
            "tokenizer": self.data.tokenizer.to_dict(),
            "step": state.step,
            "epoch": state.epoch,
            "best_bleu": best.best_bleu,
            "train_state": {**asdict(state), **best.state_dict()},
            **self.update.state_dict(),  # optimizer, scheduler, scaler
            "rng": rng,
            "rng_by_rank": self.dist.gather(rng),
            "world_size": self.dist.world_size,
        }

    def save_last(self) -> None:
        self.saver.save_last(self.checkpoint_payload())

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint written by `checkpoint_payload`: weights, optimizer, counters, RNGs."""
        self.model.load_state_dict(payload["model"])
        self.update.load_state_dict(payload)
        saved = payload["train_state"]
        self.state = TrainingState(**{f.name: saved[f.name] for f in fields(TrainingState)})
        self.early_stopping.load_state_dict(saved)
        rng_by_rank = payload.get("rng_by_rank") or [payload["rng"]]
        saved_world = payload.get("world_size", 1)
        if saved_world != self.dist.world_size:
            # a step of the old run took `saved_world` batches; skip as many of this run's steps as that covers
            self.state.epoch_step = self.state.epoch_step * saved_world // self.dist.world_size
            log.warning(
                "the checkpoint was written by %d process(es), this run has %d: the epoch continues after "
                "the batches already seen, but dropout and teacher-forcing draws differ from an uninterrupted run",
                *(saved_world, self.dist.world_size),
            )
        rng = rng_by_rank[self.dist.rank] if self.dist.rank < len(rng_by_rank) else rng_by_rank[0]
        restore_rng_states(rng, self.update.generator)
        log.info(
            "resumed at step %d (epoch %d, batch %d of it); best val BLEU so far %.2f",
            *(self.state.step, self.state.epoch, self.state.epoch_step, self.early_stopping.best_bleu),
        )
