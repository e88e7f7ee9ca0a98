"""A whole training run: data -> tokenizer -> model -> training -> averaging -> test -> `results.json`.

`train(config, run_dir)` is what `python -m seq2seq.train` calls after Hydra composed the config; it
works without Hydra too (tests and scripts call it with a `Config`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import load_checkpoint, model_from_checkpoint
from seq2seq.config import Config
from seq2seq.data.prepare import PreparedData, prepare_data
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.device import resolve_device
from seq2seq.metrics import corpus_scores
from seq2seq.model.seq2seq import count_parameters
from seq2seq.results import CheckpointScores, RunResults, TrainSummary, ValidSummary
from seq2seq.training import distributed, finetune
from seq2seq.training.checkpoints import check_resume_config, find_resume_checkpoint
from seq2seq.training.distributed import DistributedContext
from seq2seq.training.trainer import Trainer
from seq2seq.training.validation import evaluate_checkpoint, greedy_translations

log = logging.getLogger("seq2seq.training.trainer")


def train(config: Config, run_dir: Path, given: Collection[str] = ()) -> RunResults | None:
    """The whole run: returns (and writes to `run_dir/results.json`) the test scores and run summary.

    Under torchrun every rank calls this; rank 0's `run_dir` is used by all, and only rank 0
    tests and writes `results.json` (the other ranks return None after training). `given`: the keys set on
    the command line (`model.hidden_size`, ...): with `train.init_from`, one that differs from the checkpoint's
    architecture is an error.
    """
    torch.manual_seed(config.train.seed)
    random.seed(config.train.seed)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    begin = time.monotonic()
    ctx = distributed.setup(resolve_device(config.train.device))
    try:
        run_dir = Path(ctx.broadcast(str(run_dir)))
        run_dir.mkdir(parents=True, exist_ok=True)
        resume = find_resume_checkpoint(config, run_dir)
        payload = load_checkpoint(resume) if resume is not None else None
        initial = None
        if config.train.init_from is not None and payload is not None:  # resuming a fine-tuning run: its own
            saved = Config.from_dict(payload["config"])  # checkpoint holds the architecture it took over
            config = finetune.adopt_architecture(config, saved.model, saved.tokenizer, given)
        elif config.train.init_from is not None:  # fine-tuning: the checkpoint's weights, architecture and subwords
            initial = finetune.load_initial(config.train.init_from)
            config = finetune.adopt_architecture(config, initial.model_config, initial.tokenizer_config, given)
            log.info("train.init_from: starting from the weights of %s", initial.path)
        if payload is not None:
            check_resume_config(payload["config"], config, resume)
        tokenizer = Tokenizer.from_dict(payload["tokenizer"]) if payload is not None else None
        if tokenizer is None and initial is not None:
            tokenizer = initial.tokenizer
        data = prepare_on_rank_0_first(ctx, config, tokenizer)
        if initial is not None and ctx.is_main:
            log.info("train.init_from: %s", finetune.vocabulary_coverage(initial.tokenizer, data))
        trainer = Trainer(config, run_dir, data, ctx, initial_weights=initial.model if initial else None)
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
        return None
    averaged = average_checkpoints(trainer)  # None unless train.average_checkpoints >= 2
    test = evaluate_on_test_set(trainer, averaged["path"] if averaged else None)
    trainer.reporter.close()
    best = trainer.early_stopping
    valid = ValidSummary(best.best_bleu, best.best_step, state.history)
    # the test model, the checkpoint to translate with: best.pt, or averaged.pt when its validation BLEU is higher
    checkpoint = trainer.saver.best.resolve()
    if averaged is not None:
        valid.averaged_bleu, valid.averaged_steps = averaged["bleu"], averaged["steps"]
        if averaged["bleu"] > best.best_bleu:
            checkpoint = Path(averaged["path"]).resolve()
        log.info("test model: %s", checkpoint)
    summary = TrainSummary(
        steps=state.step,
        epochs=state.epoch,
        minutes=round(train_minutes, 2),
        total_minutes=round((time.monotonic() - begin) / 60, 2),
        parameters=count_parameters(trainer.model),
        tokens_per_sec=trainer.throughput.summary(),
        device=str(trainer.device),
        precision=config.train.precision,
        processes=ctx.world_size,
        corpora=corpus_summary(trainer.data),
    )
    results = RunResults(test, valid, summary, str(checkpoint))
    results.save(run_dir / "results.json")
    log.info("results written to %s", run_dir / "results.json")
    return results


def corpus_summary(data: PreparedData) -> list[dict[str, Any]]:
    """What each training corpus gave: its name, language pair, tags, weight and kept pairs."""
    parts = data.train.parts or (len(data.train),)
    return [
        {"name": c.name, "pair": c.pair, "tags": list(c.tags), "weight": c.weight, "pairs": int(kept)}
        for c, kept in zip(data.corpora, parts)
    ]


def prepare_on_rank_0_first(ctx: DistributedContext, config: Config, tokenizer: Tokenizer | None) -> PreparedData:
    """`prepare_data`; under torchrun rank 0 builds the caches (tokenizer, encoded pairs), then the others map them."""
    if not ctx.is_main:
        ctx.barrier()
    data = prepare_data(config, tokenizer)
    if ctx.is_main:
        ctx.barrier()
    return data


def average_checkpoints(trainer: Trainer) -> dict[str, Any] | None:
    """After training: average the kept `step_*.pt` into `averaged.pt` and score it on the validation set.

    Its validation BLEU comes from the same greedy decoding as validation. Returns {"path", "steps",
    "bleu", "chrf"}, or None when `train.average_checkpoints` is off or there is nothing to average.
    """
    averaged = trainer.saver.average()
    if averaged is None:
        return None
    path, steps = averaged
    model, tokenizer, _, _ = model_from_checkpoint(path, trainer.device)
    valid, decode = trainer.valid, trainer.config.decode
    scores = corpus_scores(
        greedy_translations(model, tokenizer, valid.src, decode, trainer.device, trainer.progress), valid.tgt, ter=False
    )
    trainer.reporter.scalar("valid/averaged_bleu", scores.bleu, trainer.state.step)
    best = trainer.early_stopping
    log.info(
        "averaged steps %s into %s: validation BLEU %.2f  chrF %.2f (best single checkpoint: %.2f at step %d)",
        *(", ".join(map(str, steps)), path, scores.bleu, scores.chrf, best.best_bleu, best.best_step),
    )
    return {"path": str(path), "steps": steps, "bleu": scores.bleu, "chrf": scores.chrf}


def evaluate_on_test_set(trainer: Trainer, averaged: str | Path | None = None) -> CheckpointScores:
    """Score `best.pt` on the test split with greedy and beam search; the averaged checkpoint too if given."""
    settings = (trainer.data.test, trainer.config.decode, trainer.cfg.test_beam_size, trainer.device, trainer.progress)
    results = evaluate_checkpoint(trainer.saver.best, *settings)
    if averaged is not None:
        results.averaged = evaluate_checkpoint(Path(averaged), *settings)
    return results
