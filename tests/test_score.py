"""Forced decoding: scoring a search's own output gives back its log-probability; seq2seq.score keeps lines."""

from __future__ import annotations

import json

import pytest
import torch

from seq2seq import score
from seq2seq.config import DecodeConfig
from seq2seq.decoding.ensemble import Ensemble
from seq2seq.decoding.inference import score_sentences, translate_sentences
from seq2seq.decoding.model_search import max_output_lengths
from seq2seq.decoding.search import beam_search, forced_decode, greedy_search
from seq2seq.vocab import BOS_ID, EOS_ID

from .conftest import cli
from .test_search import TableState, table_step
from .tiny_models import corpus_lines, tiny_checkpoint, tiny_model, tiny_tokenizer

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer()


def eos_prone(tokenizer, seed, **model):
    """An untrained model whose EOS logit is doubled, so that some outputs end with EOS and others run out
    of length: both cases of the search's log-probability (with and without EOS) get checked."""
    net, _ = tiny_model(tokenizer, seed, **model)
    with torch.no_grad():
        net.decoder.output.weight[EOS_ID] *= 2.0
    return net


def test_forced_decoding_of_a_hand_made_step_gives_the_searches_log_probs():
    greedy = greedy_search(table_step, TableState([()]), torch.tensor([5]))[0]
    beams = beam_search(table_step, TableState([(), ()]), torch.tensor([5]), beam_size=2, alpha=0.0, nbest=2)[0]
    outputs = [greedy.tokens, *(h.tokens for h in beams)]
    targets = torch.full((3, 5), EOS_ID)
    for row, tokens in enumerate(outputs):
        targets[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    lengths = torch.tensor([len(t) + 1 for t in outputs])
    scored = forced_decode(table_step, TableState([(), (), ()]), targets, lengths)
    for hyp, forced in zip([greedy, *beams], scored):
        assert forced.length == len(hyp.tokens) + 1
        assert forced.log_prob == pytest.approx(hyp.log_prob, abs=1e-6)


@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("ensemble", [False, True])
def test_the_score_of_the_models_own_output_is_the_log_prob_search_reported(tokenizer, beam_size, ensemble):
    sources = corpus_lines("val", 6)[0]
    cfg = DecodeConfig(beam_size=beam_size, nbest=beam_size, alpha=0.0, max_len_a=0.5, max_len_b=4, batch_size=8)
    limits = max_output_lengths(torch.tensor([len(s) + 1 for s in tokenizer.encode_src(sources)]), cfg).tolist()
    ended = cut = 0
    for seed in (0, 1):
        model = eos_prone(tokenizer, seed)
        if ensemble:
            model = Ensemble([model, eos_prone(tokenizer, seed + 10, cell="lstm")]).eval()
        hypotheses = translate_sentences(model, tokenizer, sources, cfg, CPU)
        pairs = [(k, h) for k, hyps in enumerate(hypotheses) for h in hyps]
        scores = score_sentences(model, tokenizer, [sources[k] for k, _ in pairs], [h.tokens for _, h in pairs], CPU)
        for (k, hyp), scored in zip(pairs, scores):
            assert scored.length == len(hyp.tokens) + 1
            if len(hyp.tokens) < limits[k]:  # the search produced EOS: its log-prob counts it
                ended += 1
                assert scored.log_prob == pytest.approx(hyp.log_prob, rel=1e-5, abs=1e-4)
            else:  # it ran out of length: no EOS in the search's log-prob
                cut += 1
                assert sum(scored.token_log_probs[:-1]) == pytest.approx(hyp.log_prob, rel=1e-5, abs=1e-4)
    assert ended and (cut or beam_size > 1), (ended, cut)  # both cases seen (beam search ends them all)


def test_an_empty_output_scores_eos_alone(tokenizer):
    model, _ = tiny_model(tokenizer, seed=0)
    scored = score_sentences(model, tokenizer, ["Der Hund schläft.", ""], ["", "  "], CPU)
    ids = tokenizer.encode_src(["Der Hund schläft."])[0] + [EOS_ID]
    with torch.no_grad():
        memory, state = model.encode(torch.tensor([ids]), torch.tensor([len(ids)]))
        log_probs, _, _ = model.decode_step(torch.tensor([BOS_ID]), state, memory)
    assert [s.length for s in scored] == [1, 1]
    assert scored[0].log_prob == pytest.approx(float(log_probs[0, EOS_ID]), abs=1e-6)
    assert scored[0].average == scored[0].log_prob


@pytest.fixture(scope="module")
def files(tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("score")
    src, hyp = corpus_lines("val", 5)
    src[2], hyp[3] = "", ""  # an empty source line and an empty hypothesis line
    (folder / "src.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (folder / "hyp.en").write_text("\n".join(hyp) + "\n", encoding="utf-8")
    (folder / "short.en").write_text("\n".join(hyp[:3]) + "\n", encoding="utf-8")
    a, b = tiny_checkpoint(folder / "a.pt", tokenizer, seed=0), tiny_checkpoint(folder / "b.pt", tokenizer, seed=1)
    return {"src": folder / "src.de", "hyp": folder / "hyp.en", "short": folder / "short.en", "a": a, "b": b}


def test_score_prints_one_line_per_input_line(files, capsys):
    assert score.main([str(files["a"]), "--src", str(files["src"]), "--hyp", str(files["hyp"]), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    for line in lines:
        total, average, length = line.split("\t")
        assert float(total) < 0 and int(length) >= 1
        assert float(average) == pytest.approx(float(total) / int(length), abs=1e-5)
    assert lines[3].endswith("\t1")  # the empty hypothesis: EOS alone


def test_score_json_and_ensembles(files, capsys):
    args = ["--src", str(files["src"]), "--hyp", str(files["hyp"]), "--device", "cpu", "--json", "--batch-size", "2"]
    assert score.main([str(files["a"]), *args]) == 0
    single = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert score.main([str(files["a"]), str(files["a"]), *args]) == 0
    double = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert double == single  # an ensemble of two copies scores like the model
    assert score.main([str(files["a"]), str(files["b"]), *args]) == 0
    mixed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(mixed) == 5 and mixed != single
    for row in single:
        assert set(row) == {"log_prob", "average", "length", "token_log_probs"}
        assert len(row["token_log_probs"]) == row["length"]
        assert sum(row["token_log_probs"]) == pytest.approx(row["log_prob"])


def test_score_refuses_line_counts_that_differ(files, capsys):
    args = [str(files["a"]), "--src", str(files["src"]), "--hyp", str(files["short"])]
    assert score.main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"seq2seq.score: {files['src']} has 5 lines but {files['short']} has 3\n"


@pytest.mark.slow
def test_score_command_line(files):
    result = cli("score", files["a"], files["b"], "--src", files["src"], "--hyp", files["hyp"], "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 5
    mismatch = cli("score", files["a"], "--src", files["src"], "--hyp", files["short"])
    assert mismatch.returncode == 2 and mismatch.stdout == ""
    assert f"{files['src']} has 5 lines but {files['short']} has 3" in mismatch.stderr
