"""Checkpoint averaging (`train.average_checkpoints`): the averaging itself, the kept step checkpoints, the results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import average_state_dicts, load_checkpoint, model_from_checkpoint
from seq2seq.config import Config, ConfigError
from seq2seq.training import run
from seq2seq.training.run import train

from .test_trainer import tiny_trainer


def test_the_average_of_two_state_dicts_is_their_mean_in_their_own_dtypes():
    old = {
        "w": torch.tensor([1.0, 2.0]),
        "h": torch.tensor([0.5, 1.0], dtype=torch.float16),
        "count": torch.tensor(3),
    }
    new = {
        "w": torch.tensor([3.0, 5.0]),
        "h": torch.tensor([1.5, 2.0], dtype=torch.float16),
        "count": torch.tensor(7),
    }
    averaged = average_state_dicts([old, new])
    assert list(averaged) == ["w", "h", "count"]
    assert torch.equal(averaged["w"], torch.tensor([2.0, 3.5]))
    assert averaged["h"].dtype == torch.float16 and torch.equal(averaged["h"], torch.tensor([1.0, 1.5]).half())
    assert averaged["count"].dtype == torch.int64 and int(averaged["count"]) == 7  # integer buffers: the newest
    assert torch.equal(new["w"], torch.tensor([3.0, 5.0]))  # the inputs are left alone


def test_averaging_refuses_mismatched_state_dicts_with_a_clear_error():
    with pytest.raises(ValueError, match=r"missing \['b'\], unexpected \['c'\]"):
        average_state_dicts([{"a": torch.zeros(2), "c": torch.zeros(1)}, {"a": torch.zeros(2), "b": torch.zeros(1)}])
    with pytest.raises(ValueError, match=r"cannot average 'a': shape \(3,\)"):
        average_state_dicts([{"a": torch.zeros(3)}, {"a": torch.zeros(2)}])
    with pytest.raises(ValueError, match="at least one"):
        average_state_dicts([])


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_a_bad_average_checkpoints_value_names_the_key(value):
    with pytest.raises(ConfigError, match="train.average_checkpoints must be a non-negative integer"):
        Config.from_dict({"train": {"average_checkpoints": value}})


def test_the_trainer_keeps_the_last_n_step_checkpoints_and_averages_them(tmp_path):
    trainer = tiny_trainer(
        tmp_path, max_steps=4, validate_every=1, early_stopping_patience=None, average_checkpoints=3, insight=False
    )
    trainer.fit()
    kept = trainer.saver.step_checkpoints()
    assert [p.name for p in kept] == ["step_2.pt", "step_3.pt", "step_4.pt"]

    averaged = run.average_checkpoints(trainer)
    assert averaged is not None and averaged["steps"] == [2, 3, 4] and 0.0 <= averaged["bleu"] <= 100.0
    path = trainer.ckpt_dir / "averaged.pt"
    assert Path(averaged["path"]) == path
    payload = load_checkpoint(path)
    assert payload["averaged_steps"] == [2, 3, 4]
    model, _, _, _ = model_from_checkpoint(path)  # self-contained, like best.pt
    weights = [load_checkpoint(p)["model"] for p in kept]
    for name, tensor in model.state_dict().items():
        mean = sum(w[name].double() for w in weights) / len(weights)
        assert torch.allclose(tensor.double(), mean, atol=1e-7), name
    assert not torch.equal(weights[0]["decoder.output.weight"], weights[-1]["decoder.output.weight"])

    scores = run.evaluate_on_test_set(trainer, averaged["path"])
    scores = scores.to_dict()
    assert {"greedy", "beam", "averaged"} <= scores.keys()
    assert {"greedy", "beam"} == scores["averaged"].keys() and "bleu" in scores["averaged"]["beam"]


def test_averaging_off_writes_no_step_checkpoints(tmp_path):
    trainer = tiny_trainer(tmp_path, max_steps=2, validate_every=1, average_checkpoints=1, insight=False)
    trainer.fit()
    assert trainer.saver.step_checkpoints() == [] and run.average_checkpoints(trainer) is None


@pytest.mark.parametrize("averaged_bleu,test_model", [(101.0, "averaged.pt"), (-1.0, "best.pt")])
def test_results_hold_the_averaged_scores_and_name_the_better_model(tmp_path, monkeypatch, averaged_bleu, test_model):
    setup = tiny_trainer(tmp_path, max_steps=3, validate_every=1, average_checkpoints=2, insight=False)
    monkeypatch.setattr(run, "prepare_data", lambda config, tokenizer=None: setup.data)
    real = run.average_checkpoints

    def rigged(trainer):  # the real averaging, with a validation BLEU above or below every single checkpoint's
        return {**real(trainer), "bleu": averaged_bleu}

    monkeypatch.setattr(run, "average_checkpoints", rigged)
    run_dir = tmp_path / "run2"
    results = train(setup.config, run_dir)
    results = results.to_dict()
    assert json.loads((run_dir / "results.json").read_text()) == results
    assert results["valid"]["averaged_bleu"] == averaged_bleu and results["valid"]["averaged_steps"] == [2, 3]
    assert {"greedy", "beam"} == results["test"]["averaged"].keys()
    assert Path(results["checkpoint"]).name == test_model
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt")) == ["step_2.pt", "step_3.pt"]
