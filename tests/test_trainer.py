"""The training loop's guards, on a tiny in-memory setup (no subprocess)."""

from __future__ import annotations

import math

import pytest
import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import Config
from seq2seq.data.corpus import ParallelCorpus
from seq2seq.data.encoded import EncodedCorpus
from seq2seq.data.prepare import PreparedData
from seq2seq.training import step as training_step
from seq2seq.training import validation
from seq2seq.training.stopping import TrainingDiverged
from seq2seq.training.trainer import Trainer

from .tiny_models import corpus_lines, tiny_tokenizer


def tiny_trainer(tmp_path, **train) -> Trainer:
    """A Trainer of a tiny model on 200 embedded pairs; the insight probe is off unless `insight=True`."""
    src, tgt = corpus_lines("train", 200)
    config = Config.from_dict(
        {
            "data": {"cache_dir": str(tmp_path / "data")},
            "tokenizer": {"vocab_size": 120, "cache_dir": str(tmp_path / "spm")},
            "model": {"embedding_size": 8, "hidden_size": 8},
            "train": {
                "max_steps": 6,
                "validate_every": 100,
                "log_every": 1,
                "device": "cpu",
                "batch_tokens": 300,
                "insight": False,
                **train,
            },
        }
    )
    tok = tiny_tokenizer(vocab_size=120, joint=True, pairs=200)  # what build_tokenizer trains with config.tokenizer
    held_out = ParallelCorpus(src[:4], tgt[:4])
    data = PreparedData(tok, EncodedCorpus.from_lists(tok.encode_src(src), tok.encode_tgt(tgt)), held_out, held_out)
    return Trainer(config, tmp_path / "run", data)


def nan_loss_on(steps: set[int] | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the training loss NaN at the given (1-based) training steps; None: at every step."""
    real = training_step.sequence_loss
    calls = {"train": 0}

    def loss(logits, target, label_smoothing=0.0):
        value = real(logits, target, label_smoothing)
        if torch.is_grad_enabled():  # a training step, not validation
            calls["train"] += 1
            if steps is None or calls["train"] in steps:
                return value * float("nan")
        return value

    monkeypatch.setattr(training_step, "sequence_loss", loss)


def test_a_non_finite_step_is_skipped_and_counted(tmp_path, monkeypatch):
    nan_loss_on({2, 3}, monkeypatch)
    trainer = tiny_trainer(tmp_path)
    state = trainer.fit()
    assert state.step == 6 and state.skipped_steps == 2 and state.bad_steps_in_a_row == 0
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_too_many_non_finite_steps_stop_with_the_last_good_weights(tmp_path, monkeypatch):
    nan_loss_on(None, monkeypatch)
    trainer = tiny_trainer(tmp_path, max_bad_steps=3)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match="train.max_bad_steps=3"):
        trainer.fit()
    assert trainer.state.step == 4 and trainer.state.skipped_steps == 4
    saved = load_checkpoint(trainer.ckpt_dir / "last.pt")
    for name, tensor in before.items():
        assert torch.equal(saved["model"][name], tensor), name  # no bad update ever applied
    trainer.reporter.flush()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trainer.run_dir))
    events.Reload()
    assert [e.value for e in events.Scalars("train/skipped_steps")] == [1, 2, 3, 4]


def test_validation_scores_and_checkpoints(tmp_path):
    trainer = tiny_trainer(
        tmp_path, max_steps=2, validate_every=1, early_stopping_patience=None, insight=True, insight_sentences=1
    )
    state = trainer.fit()
    assert [row["step"] for row in state.history] == [1, 2]
    assert all(math.isfinite(row["loss"]) and row["perplexity"] >= 1.0 for row in state.history)
    assert (trainer.ckpt_dir / "best.pt").is_file() and (trainer.ckpt_dir / "last.pt").is_file()
    assert load_checkpoint(trainer.ckpt_dir / "last.pt")["train_state"]["step"] == 2
    trainer.reporter.flush()  # the insight probe reported at each validation too
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trainer.run_dir))
    events.Reload()
    assert [e.step for e in events.Scalars("gates/encoder_l0_forward/update_mean")] == [1, 2]
    assert "attention/sentence_0" in events.Tags()["images"]


def test_early_stopping_after_patience_validations_without_a_bleu_gain(tmp_path, monkeypatch):
    # each validation scores twice: free-running BLEU first, then teacher-forced BLEU (same value here)
    bleu = iter(v for v in [10.0, 12.0, 11.0, 12.0, 9.0, 50.0] for _ in range(2))
    real = validation.corpus_scores

    def fake_bleu(hyps, refs, ter=True):
        return real(hyps, refs, ter=False).__class__(next(bleu), 0.0, "sig", "sig", 0.0 if ter else None)

    monkeypatch.setattr(validation, "corpus_scores", fake_bleu)
    trainer = tiny_trainer(tmp_path, max_steps=50, validate_every=1, early_stopping_patience=3, lr_scheduler="none")
    state = trainer.fit()
    assert state.step == 5  # best at step 2 (12.0); 11, 12 (no gain), 9: three without a gain
    assert (trainer.early_stopping.best_bleu, trainer.early_stopping.best_step) == (12.0, 2)
    assert load_checkpoint(trainer.ckpt_dir / "best.pt")["step"] == 2
