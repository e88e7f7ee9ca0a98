"""torchrun with two CPU processes (gloo): the same updates as one process on the same global batches."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import Config
from seq2seq.data.batches import epoch_batches, make_batch
from seq2seq.data.prepare import prepare_data
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.training.distributed import shard
from seq2seq.training.trainer import Trainer
from tests.conftest import REPO, tiny_overrides

pytestmark = pytest.mark.slow  # trains in a subprocess (or under torchrun, or starts a server)


def torchrun(run_dir: Path, spm_cache: Path, *overrides: str) -> subprocess.CompletedProcess:
    args = [
        *tiny_overrides(spm_cache, pairs=300, steps=4),
        "model.dropout=0.0",  # no dropout, so one process can replay the same arithmetic
        "train.matmul_precision=fp32",  # fp32 products: two half batches sum to the whole one within 1e-5
        "train.lr_scheduler=none",
        "train.batch_tokens=300",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = subprocess.run(
        [*command, "-m", "seq2seq.train", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, spm_cache) -> tuple[Path, str]:
    """Four steps with two processes, uninterrupted."""
    run_dir = tmp_path_factory.mktemp("ddp")
    result = torchrun(run_dir, spm_cache)
    return run_dir, result.stdout + result.stderr


def test_two_processes_match_one_process_on_the_same_global_batches(tmp_path, whole_run):
    run_dir, output = whole_run
    assert "rank 0 of 2 processes" in output
    # only rank 0 writes: one TensorBoard event file, one results.json, the checkpoints
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert (run_dir / "results.json").is_file()
    payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert payload["step"] == 4 and payload["world_size"] == 2 and len(payload["rng_by_rank"]) == 2

    # one process, fed step i the union of the two ranks' batches of step i
    config = Config.from_dict(payload["config"])
    data = prepare_data(config, Tokenizer.from_dict(payload["tokenizer"]))
    random.seed(config.train.seed)
    torch.manual_seed(config.train.seed)
    trainer = Trainer(config, tmp_path / "single", data)
    lengths = data.train.src_lengths, data.train.tgt_lengths
    steps = shard(epoch_batches(*lengths, config.train.batch_tokens, config.train.seed, epoch=1), 2)
    assert len(steps) >= 4, "the test needs four global steps in the first epoch"
    for rank_batches in steps[:4]:
        indices = [*rank_batches[0], *rank_batches[1]]
        batch = make_batch(*data.train.pairs(indices))
        trainer.train_step(batch)  # counts the step too
    single = trainer.model.state_dict()
    for name, value in payload["model"].items():
        assert torch.allclose(single[name], value, atol=1e-5, rtol=1e-4), name
    # and the run did learn something: the weights moved from their initial values
    torch.manual_seed(config.train.seed)
    initial = Trainer(config, tmp_path / "init", data).model.state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in payload["model"].items())


def test_resume_under_torchrun_continues_like_an_uninterrupted_run(tmp_path, spm_cache, whole_run):
    torchrun(tmp_path / "split", spm_cache, "train.max_steps=2")
    torchrun(tmp_path / "split", spm_cache, "train.resume=auto")
    whole = load_checkpoint(whole_run[0] / "checkpoints" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert split["step"] == whole["step"] == 4
    for name, value in whole["model"].items():
        assert torch.equal(split["model"][name], value), name
    for a, b in zip(whole["optimizer"]["state"].values(), split["optimizer"]["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_finetuning_under_torchrun_freezes_and_resumes_exactly(tmp_path, spm_cache, whole_run):
    """train.init_from + train.freeze under torchrun: the frozen encoder stays the start's, bit for bit, and a
    fine-tuning run stopped and resumed under torchrun ends where an uninterrupted one does."""
    start = whole_run[0] / "checkpoints" / "last.pt"
    finetune = (f"train.init_from={start}", "train.freeze=[encoder]")
    torchrun(tmp_path / "whole", spm_cache, *finetune)
    torchrun(tmp_path / "split", spm_cache, *finetune, "train.max_steps=2")
    torchrun(tmp_path / "split", spm_cache, *finetune, "train.resume=auto")
    initial, whole, split = (
        load_checkpoint(path)
        for path in (
            start,
            tmp_path / "whole" / "checkpoints" / "last.pt",
            tmp_path / "split" / "checkpoints" / "last.pt",
        )
    )
    assert whole["step"] == split["step"] == 4  # a fresh step counter: not the start's 4 + 4
    for name, value in whole["model"].items():
        assert torch.equal(split["model"][name], value), name
        assert torch.equal(value, initial["model"][name]) == name.startswith("encoder."), name
