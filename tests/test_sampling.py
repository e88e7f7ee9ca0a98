"""Sampling (decode.sampling, translate --sampling): draws follow the model's distribution as top-k, top-p,
epsilon and temperature narrow it; the same seed gives the same samples whatever the batching (batch sizes,
n-best, the server's batches); top-k 1 is greedy; bad settings are one line naming the key or option."""

from __future__ import annotations

import io
import math
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from seq2seq import translate
from seq2seq.config import Config, ConfigError, DecodeConfig
from seq2seq.data.batches import make_batch
from seq2seq.decoding.inference import translate_sentences
from seq2seq.decoding.lexicon import build_shortlist
from seq2seq.decoding.sampling import Sampler, sample_streams, uniforms

from .test_serve import make_client, tiny_run
from .tiny_models import corpus_lines, tiny_checkpoint, tiny_model, tiny_tokenizer

CPU = torch.device("cpu")
SAMPLE = DecodeConfig(sampling=True, seed=7, max_len_a=0.0, max_len_b=8)  # short outputs: an untrained model
PROBS = [0.5, 0.3, 0.15, 0.05]


def draws(rows: int = 6000, **settings) -> np.ndarray:
    """Columns drawn for `rows` rows that all have the distribution PROBS, each row its own stream."""
    streams = sample_streams(torch.arange(rows).unsqueeze(1), torch.ones(rows, dtype=torch.long), 0, 1)
    sampler = Sampler(replace(SAMPLE, **settings), streams)
    log_probs = torch.tensor(PROBS).log().expand(rows, -1)
    columns, chosen = sampler.pick(log_probs, torch.arange(rows), torch.zeros(rows, dtype=torch.long))
    assert torch.equal(chosen, log_probs.gather(1, columns.unsqueeze(1)).squeeze(1))  # the model's own log-prob
    return np.bincount(columns.numpy(), minlength=len(PROBS)) / rows


def close(freq: np.ndarray, expected: list[float]) -> bool:
    """Within four standard errors of `expected` (6000 draws): wrong by chance about once in 15,000 runs."""
    return all(abs(f - p) <= 4 * math.sqrt(max(p * (1 - p), 1e-9) / 6000) + 1e-9 for f, p in zip(freq, expected))


@pytest.mark.parametrize(
    "settings,expected",
    [
        ({}, PROBS),
        ({"top_k": 2}, [0.5 / 0.8, 0.3 / 0.8, 0, 0]),
        ({"top_k": 1}, [1, 0, 0, 0]),
        ({"top_p": 0.6}, [0.5 / 0.8, 0.3 / 0.8, 0, 0]),  # 0.5 falls short of 0.6, 0.5 + 0.3 reaches it
        ({"top_p": 0.5}, [1, 0, 0, 0]),
        ({"top_p": 0.81}, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),
        ({"epsilon": 0.1}, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),
        ({"temperature": 0.5}, [p**2 / sum(q**2 for q in PROBS) for p in PROBS]),
        ({"temperature": 2.0}, [p**0.5 / sum(q**0.5 for q in PROBS) for p in PROBS]),
    ],
)
def test_draws_follow_the_narrowed_distribution(settings, expected):
    freq = draws(**settings)
    assert close(freq, expected), (settings, freq)


def test_streams_depend_on_the_sentence_seed_and_sample_only():
    ids = torch.tensor([[5, 6, 7, 3, 0, 0], [9, 3, 0, 0, 0, 0]])  # padded differently than below
    alone = sample_streams(torch.tensor([[9, 3]]), torch.tensor([2]), 1, 3)
    both = sample_streams(ids, torch.tensor([4, 2]), 1, 3)
    assert list(both[3:]) == list(alone)  # the second sentence's three streams, whatever the batch around it
    assert len(set(both.tolist())) == 6  # every sample of every sentence its own stream
    assert not np.array_equal(sample_streams(ids, torch.tensor([4, 2]), 2, 3), both)  # another seed
    u = uniforms(both, 0)
    assert np.all((u >= 0) & (u < 1)) and not np.array_equal(u, uniforms(both, 1))
    many = uniforms(sample_streams(torch.arange(20000).unsqueeze(1), torch.ones(20000, dtype=torch.long), 0, 1), 3)
    assert abs(many.mean() - 0.5) < 0.01 and abs((many < 0.1).mean() - 0.1) < 0.01


@pytest.fixture(scope="module")
def tiny():
    tokenizer = tiny_tokenizer()
    model, _ = tiny_model(tokenizer, seed=0)
    return model, tokenizer, corpus_lines("test", 20)[0]


def tokens(hypotheses) -> list[list[list[int]]]:
    return [[h.tokens for h in hyps] for hyps in hypotheses]


def test_the_same_seed_gives_the_same_samples_whatever_the_batch_size(tiny):
    model, tokenizer, lines = tiny
    cfg = replace(SAMPLE, nbest=3)
    by_size = [
        tokens(translate_sentences(model, tokenizer, lines, replace(cfg, batch_size=b), CPU)) for b in (1, 7, 64)
    ]
    assert by_size[0] == by_size[1] == by_size[2]
    assert all(len(samples) == 3 for samples in by_size[0])
    assert sum(len({tuple(s) for s in samples}) > 1 for samples in by_size[0]) >= len(lines) // 2  # they vary
    one = tokens(translate_sentences(model, tokenizer, lines, SAMPLE, CPU))
    assert [s[0] for s in one] == [s[0] for s in by_size[0]]  # the first sample does not depend on nbest
    other = tokens(translate_sentences(model, tokenizer, lines, replace(SAMPLE, seed=8), CPU))
    assert other != one


def test_top_k_1_is_exactly_greedy(tiny):
    model, tokenizer, lines = tiny
    greedy = translate_sentences(model, tokenizer, lines, replace(SAMPLE, sampling=False), CPU)
    top1 = translate_sentences(model, tokenizer, lines, replace(SAMPLE, top_k=1), CPU)
    assert tokens(greedy) == tokens(top1)
    assert [h[0].log_prob for h in greedy] == [h[0].log_prob for h in top1]


def test_samples_with_a_shortlist_stay_in_it_and_are_reproducible(tiny):
    model, tokenizer, lines = tiny
    src, tgt = corpus_lines("train", 200)
    src_ids, tgt_ids = tokenizer.encode_src(src), tokenizer.encode_tgt(tgt)
    shortlist = build_shortlist(src_ids, tgt_ids, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, 5, 10)
    cfg = replace(SAMPLE, nbest=2)
    runs = [
        tokens(translate_sentences(model, tokenizer, lines, replace(cfg, batch_size=b), CPU, shortlist=shortlist))
        for b in (1, 64)
    ]
    assert runs[0] == runs[1]
    for line, samples in zip(lines, runs[0]):
        candidates = shortlist.candidates(make_batch(tokenizer.encode_src([line])).src, tokenizer.tgt_vocab_size)
        allowed = set(candidates.shared.tolist()) | set(candidates.own[0][candidates.valid[0]].tolist())
        assert all(set(sample) <= allowed for sample in samples)


@pytest.mark.parametrize(
    "key,value,words",
    [
        ("top_k", -1, "decode.top_k must be a number >= 0"),
        ("top_p", 0.0, "decode.top_p must be in (0, 1]"),
        ("top_p", 1.5, "decode.top_p must be in (0, 1]"),
        ("epsilon", 1.0, "decode.epsilon must be in [0, 1)"),
        ("temperature", 0.0, "decode.temperature must be a number > 0"),
        ("seed", -3, "decode.seed must be an integer >= 0"),
        ("beam_size", 5, "decode.beam_size must be 1, not 5"),
    ],
)
def test_bad_sampling_settings_name_the_key(key, value, words):
    with pytest.raises(ConfigError) as error:
        Config.from_dict({"decode": {"sampling": True, key: value}})
    assert words in str(error.value)


def run_translate(argv: list[str], text: str, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    status = translate.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    decode = {"beam_size": 4, "max_len_a": 0.0, "max_len_b": 8}  # a checkpoint that decodes with beam 4
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "best.pt", tiny_tokenizer(), seed=0, decode=decode)


def test_translate_samples_on_the_command_line(checkpoint, monkeypatch, capsys):
    text = "\n".join(corpus_lines("test", 5)[0]) + "\n"
    argv = [str(checkpoint), "--sampling", "--nbest", "2", "--seed", "3"]
    status, first, err = run_translate(argv, text, monkeypatch, capsys)
    assert status == 0, err
    lines = first.splitlines()
    assert len(lines) == 5 and all(line.count(" ||| ") == 1 for line in lines)
    again = run_translate([*argv, "--batch-size", "1"], text, monkeypatch, capsys)[1]
    other = run_translate([*argv[:-1], "4"], text, monkeypatch, capsys)[1]
    assert again == first and other != first
    greedy = run_translate([str(checkpoint), "--beam-size", "1"], text, monkeypatch, capsys)[1]
    assert run_translate([str(checkpoint), "--sampling", "--top-k", "1"], text, monkeypatch, capsys)[1] == greedy


@pytest.mark.parametrize(
    "options,words",
    [
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--temperature", "-1"], "--temperature must be a number > 0"),
        (["--epsilon", "1"], "--epsilon must be in [0, 1)"),
        (["--beam-size", "3"], "--sampling draws each output instead of searching: --beam-size must be 1, not 3"),
    ],
)
def test_bad_sampling_options_are_one_line_and_exit_2(checkpoint, options, words, monkeypatch, capsys):
    status, out, err = run_translate([str(checkpoint), "--sampling", *options], "Der Hund.\n", monkeypatch, capsys)
    assert status == 2 and out == ""
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_server_samples_as_translate_does_however_it_batches(tmp_path):
    run = tiny_run(tmp_path / "run", cell="gru")
    lines = [line for line in corpus_lines("test", 20)[0] if len(line) <= 80][:6]  # within SMALL's line limit
    request = {"sampling": True, "nbest": 2, "seed": 5}
    with make_client(run, max_batch_sentences=64, max_wait_ms=200) as client:
        alone = [client.post("/translate", json={"text": [line], **request}).json() for line in lines]
        start, results = threading.Barrier(len(lines)), {}

        def post(i: int) -> None:
            start.wait()
            results[i] = client.post("/translate", json={"text": [lines[i]], **request}).json()

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(lines))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        together = client.post("/translate", json={"text": lines, **request}).json()
        assert client.get("/health").json()["largest_batch"] > 1
        refusals = [
            client.post("/translate", json={"text": ["a"], **body})
            for body in (
                {"sampling": True, "beam_size": 3},
                {"sampling": True, "top_p": 0},
                {"top_k": 3},
                {"sampling": True, "temperature": 101},
            )
        ]
    texts = [[h["text"] for h in entry["translations"][0]["hypotheses"]] for entry in alone]
    assert [[h["text"] for h in results[i]["translations"][0]["hypotheses"]] for i in range(len(lines))] == texts
    assert [[h["text"] for h in entry["hypotheses"]] for entry in together["translations"]] == texts
    assert together["sampling"] is True and together["seed"] == 5 and together["nbest"] == 2
    from seq2seq.decoding.loading import load_for_decoding

    model, tokenizer, config, *_ = load_for_decoding([run], "cpu")
    cfg = replace(config.decode, sampling=True, nbest=2, seed=5, beam_size=1)
    expected = translate_sentences(model, tokenizer, lines, cfg, CPU)
    assert [tokenizer.decode_tgt([h.tokens for h in hyps]) for hyps in expected] == texts
    assert [(r.status_code, r.json()["field"]) for r in refusals] == [
        (422, "beam_size"),
        (422, "top_p"),
        (422, "top_k"),
        (422, "temperature"),
    ]
    assert "sampling" in refusals[2].json()["error"]
    assert "top_p must be in (0, 1]" in refusals[1].json()["error"]
