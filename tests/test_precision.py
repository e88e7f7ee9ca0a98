"""train.precision: bf16 autocast on the CPU, fp16 with a gradient scaler whose state survives a resume."""

from __future__ import annotations

import pytest
import torch

from seq2seq.config import ConfigError, ModelConfig
from seq2seq.data.batches import make_batch
from seq2seq.device import autocast_dtype
from seq2seq.model.seq2seq import build_model
from seq2seq.training.loss import sequence_loss

from .test_trainer import tiny_trainer


def test_bf16_autocasts_the_forward_pass_and_keeps_fp32_weights(tmp_path):
    torch.manual_seed(0)
    trainer = tiny_trainer(tmp_path, precision="bf16", max_steps=2)
    seen: list[torch.dtype] = []
    trainer.model.decoder.output.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    state = trainer.fit()
    assert torch.bfloat16 in seen  # training steps ran the vocabulary projection in bf16
    assert state.skipped_steps == 0 and all(p.dtype == torch.float32 for p in trainer.model.parameters())


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_bf16_runs_the_fused_recurrent_kernels(cell):
    """The CPU encoder (unpacked) and the decoder's fused pass without input feeding call the fused kernels
    directly; under bf16 autocast oneDNN's LSTM kernel fails on CPUs without native bf16, so it is bypassed."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell=cell, embedding_size=8, hidden_size=8, input_feeding=False), 30, 30)
    batch = make_batch([[5, 6, 7], [8, 9]], [[10, 11, 12, 13], [14, 15]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(batch.src, batch.src_lengths, batch.tgt_in, 1.0)
    sequence_loss(logits, batch.tgt_out, 0.1).backward()
    assert logits.dtype == torch.bfloat16
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def fp16_trainer(tmp_path, max_steps):
    torch.manual_seed(0)
    trainer = tiny_trainer(tmp_path, precision="fp16", max_steps=max_steps)
    assert trainer.update.scaler.is_enabled()
    # grow the loss scale after every good step, so the scale is different at every step
    trainer.update.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)
    return trainer


def test_fp16_scaler_state_joins_the_checkpoint_and_resume_replays_exactly(tmp_path):
    whole = fp16_trainer(tmp_path / "whole", max_steps=4)
    whole.fit()
    first = fp16_trainer(tmp_path / "first", max_steps=2)
    first.fit()
    payload = first.checkpoint_payload()
    assert payload["scaler"]["scale"] == first.update.scaler.get_scale() != 2.0**10
    resumed = fp16_trainer(tmp_path / "resumed", max_steps=4)
    resumed.restore(payload)
    state = resumed.fit()
    assert state.step == 4 and state.bad_steps_in_a_row == 0
    assert resumed.update.scaler.get_scale() == whole.update.scaler.get_scale()
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_needs_a_cpu_or_cuda_device(precision):
    with pytest.raises(ConfigError, match="train.precision"):
        autocast_dtype(precision, torch.device("mps"))
    assert autocast_dtype("fp32", torch.device("mps")) is None
