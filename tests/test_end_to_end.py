"""The whole pipeline through its command lines: train -> checkpoint -> translate / evaluate -> TensorBoard.

One short training run (module-scoped: the quick-start settings, stopped at 200 steps) feeds every test here.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import torch

from seq2seq.checkpoint import model_from_checkpoint
from seq2seq.decoding.inference import best_strings, translate_sentences
from seq2seq.metrics import corpus_scores
from seq2seq.model.seq2seq import build_model

from .conftest import cli
from .tiny_models import CORPUS, corpus_lines

TRAIN_OVERRIDES = [  # the quick-start model and settings, stopped early (about 1.5 minutes on 2 cores)
    "+experiment=gru",
    "train.max_steps=200",
    "train.validate_every=100",
    "train.log_every=25",
    "train.max_valid_sentences=100",
    "train.test_beam_size=3",
    "train.device=cpu",
]
LEARNED_BLEU = 20.0  # an untrained model scores ~0 (checked below)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("spm_e2e")
    proc = cli(
        "train",
        *TRAIN_OVERRIDES,
        f"hydra.run.dir={run_dir}",
        f"tokenizer.cache_dir={cache}",
        f"data.cache_dir={cache}",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"dir": run_dir, "stdout": proc.stdout, "best": run_dir / "checkpoints" / "best.pt"}


@pytest.mark.slow
def test_run_directory_layout(run):
    d = run["dir"]
    for path in ("checkpoints/best.pt", "checkpoints/last.pt", "results.json", "train.log", ".hydra/config.yaml"):
        assert (d / path).exists(), path
    assert list(d.glob("events.out.tfevents.*"))
    payload = torch.load(d / "checkpoints" / "best.pt", weights_only=True)
    assert {"model", "config", "tokenizer", "step"} <= set(payload)


@pytest.mark.slow
def test_short_training_actually_learns(run):
    results = json.loads((run["dir"] / "results.json").read_text())
    learned = results["test"]["greedy"]["bleu"]
    assert learned >= LEARNED_BLEU, results["valid"]["history"]
    assert results["test"]["beam"]["beam_size"] == 3
    assert "nrefs:1|case:mixed" in results["test"]["beam"]["bleu_signature"]
    # The same architecture, untrained, cannot get there.
    model, tokenizer, config, _ = model_from_checkpoint(run["dir"] / "checkpoints" / "best.pt")
    torch.manual_seed(0)
    untrained = build_model(config.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size).eval()
    src, ref = corpus_lines("test", 100)
    decode = replace(config.decode, beam_size=1)
    hyps = best_strings(tokenizer, translate_sentences(untrained, tokenizer, src, decode, torch.device("cpu")))
    assert corpus_scores(hyps, ref).bleu < 5.0 < LEARNED_BLEU


@pytest.mark.slow
def test_train_prints_the_translate_command(run):
    best = str((run["dir"] / "checkpoints" / "best.pt").resolve())
    assert f"python -m seq2seq.translate {best}" in run["stdout"]


@pytest.mark.slow
def test_translate_keeps_one_output_line_per_input_line(run):
    test_src = corpus_lines("test", 6)[0]
    lines = [test_src[0], "", test_src[1], "   ", *test_src[2:], "Hund"]
    stdin = "\n".join(lines)  # the last line has no newline
    proc = cli("translate", run["best"], "--beam-size", 2, "--batch-size", 3, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)  # every line newline-terminated
    out = out[:-1]
    assert out[1] == "" and out[3] == ""  # empty in, empty out
    assert all(out[i].strip() for i in (0, 2, 4, 5, 6, 7))
    assert "translating" in proc.stderr  # logs on stderr only


@pytest.mark.slow
def test_translate_nbest(run):
    proc = cli("translate", run["best"], "--nbest", 3, "--beam-size", 4, stdin="Der Hund schläft.\n")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and proc.stdout.count(" ||| ") == 2


@pytest.mark.slow
def test_evaluate_matches_the_run_greedy_score(run):
    proc = cli(
        "evaluate", run["best"], "--src", CORPUS / "test.de", "--ref", CORPUS / "test.en", "--beam-size", 1, "--json"
    )
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout)
    results = json.loads((run["dir"] / "results.json").read_text())
    assert scores["bleu"] == pytest.approx(results["test"]["greedy"]["bleu"], abs=0.01)
    assert scores["chrf"] == pytest.approx(results["test"]["greedy"]["chrf"], abs=0.01)


@pytest.mark.slow  # a command in a subprocess (the quick tier has the in-process checks)
def test_translate_refuses_a_broken_checkpoint_with_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = cli("translate", bad, stdin="Hallo\n")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "bad.pt" in proc.stderr


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_named_scalars(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run["dir"]), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/teacher_forcing_ratio",
        "train/tokens_per_sec",
        "valid/loss",
        "valid/perplexity",
        "valid/bleu",
        "valid/chrf",
    }
    assert expected <= scalars, scalars
    bleu = [e.value for e in events.Scalars("valid/bleu")]
    assert len(bleu) == 2 and bleu[-1] > bleu[0]
    assert len(events.Scalars("train/loss")) == 200 // 25
    assert any(tag.startswith("valid/samples") for tag in events.Tags()["tensors"])


@pytest.mark.slow  # a command in a subprocess (the quick tier has the in-process checks)
def test_hub_dataset_without_network_fails_fast_with_a_hint(tmp_path):
    start = time.monotonic()
    proc = cli("train", "data=multi30k", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    assert time.monotonic() - start < 30
    assert "data.dir" in proc.stderr + proc.stdout
