"""Ensembles decode like one model: two copies of a model are that model; two models average their log-probs."""

from __future__ import annotations

import io
import sys

import pytest
import torch

from seq2seq import evaluate, translate
from seq2seq.checkpoint import CheckpointError
from seq2seq.config import DecodeConfig
from seq2seq.data.batches import make_batch
from seq2seq.decoding.ensemble import Ensemble
from seq2seq.decoding.inference import score_sentences, translate_sentences
from seq2seq.decoding.loading import load_models
from seq2seq.decoding.model_search import score_batch, translate_batch
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.vocab import BOS_ID

from .tiny_models import corpus_lines, tiny_checkpoint, tiny_tokenizer

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Checkpoints of tiny untrained models: a and b share a tokenizer (and differ in cell and attention)."""
    tokenizer = tiny_tokenizer()
    folder = tmp_path_factory.mktemp("checkpoints")
    other_tokenizer = tiny_tokenizer(vocab_size=120)
    return {
        "a": tiny_checkpoint(folder / "a.pt", tokenizer, seed=0),
        "b": tiny_checkpoint(folder / "b.pt", tokenizer, seed=1, cell="lstm", attention="luong_general"),
        "plain": tiny_checkpoint(folder / "plain.pt", tokenizer, seed=2, attention="none"),
        "other_vocab": tiny_checkpoint(folder / "other.pt", other_tokenizer, seed=0),
    }


SOURCES = corpus_lines("val", 6)[0] + [""]


def test_one_checkpoint_gives_the_plain_model_several_an_ensemble(ckpt):
    model, tokenizer, config = load_models([ckpt["a"]], CPU)
    assert type(model) is Seq2Seq and config.decode.max_len_b == 6
    ensemble = load_models([ckpt["a"], ckpt["b"]], CPU).model
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 2 and not ensemble.training


@pytest.mark.parametrize("beam_size,nbest", [(1, 1), (3, 2)])
def test_two_copies_of_a_model_translate_and_score_exactly_like_it(ckpt, beam_size, nbest):
    single, tokenizer, _ = load_models([ckpt["a"]], CPU)
    double = load_models([ckpt["a"], ckpt["a"]], CPU).model
    cfg = DecodeConfig(beam_size=beam_size, nbest=nbest, max_len_a=0.5, max_len_b=8, batch_size=4)
    alone = translate_sentences(single, tokenizer, SOURCES, cfg, CPU)
    together = translate_sentences(double, tokenizer, SOURCES, cfg, CPU)
    assert [[h.tokens for h in hyps] for hyps in together] == [[h.tokens for h in hyps] for hyps in alone]
    assert [[h.log_prob for h in hyps] for hyps in together] == [[h.log_prob for h in hyps] for hyps in alone]
    outputs = [hyps[0].tokens for hyps in alone]
    scores = [s.token_log_probs for s in score_sentences(single, tokenizer, SOURCES, outputs, CPU, batch_size=4)]
    assert [s.token_log_probs for s in score_sentences(double, tokenizer, SOURCES, outputs, CPU, 4)] == scores


def test_two_models_average_their_log_probs_and_attention_at_every_step(ckpt):
    model_a, tokenizer, _ = load_models([ckpt["a"]], CPU)
    model_b = load_models([ckpt["b"]], CPU).model
    ensemble = load_models([ckpt["a"], ckpt["b"]], CPU).model
    batch = make_batch(tokenizer.encode_src(SOURCES[:3]))
    states = {m: m.encode(batch.src, batch.src_lengths) for m in (model_a, model_b, ensemble)}
    prev = torch.full((batch.size,), BOS_ID)
    with torch.no_grad():
        for _ in range(2):  # the first step, and one after every member has updated its own state
            out = {}
            for m, (memory, state) in states.items():
                log_probs, state, attention = m.decode_step(prev, state, memory)
                out[m], states[m] = (log_probs, attention), (memory, state)
            (log_a, att_a), (log_b, att_b), (log_ens, att_ens) = out[model_a], out[model_b], out[ensemble]
            finite = torch.isfinite(log_a)  # PAD and BOS are -inf in every model
            assert torch.equal(finite, torch.isfinite(log_ens))
            assert torch.allclose(log_ens[finite], (log_a[finite] + log_b[finite]) / 2, atol=1e-6)
            assert not torch.allclose(log_ens[finite], log_a[finite], atol=1e-3)
            assert torch.allclose(att_ens, (att_a + att_b) / 2, atol=1e-6)
            prev = log_a.argmax(dim=1)


def test_greedy_keep_attention_of_an_ensemble_is_the_members_mean(ckpt):
    models = [load_models([ckpt[name]], CPU).model for name in ("a", "b")]
    ensemble, tokenizer, _ = load_models([ckpt["a"], ckpt["b"]], CPU)
    batch = make_batch(tokenizer.encode_src(SOURCES[:3]))
    greedy = DecodeConfig(beam_size=1, max_len_b=8)
    hyps = [h for (h,) in translate_batch(ensemble, batch, greedy, keep_attention=True)]
    forced = make_batch(tokenizer.encode_src(SOURCES[:3]), [h.tokens for h in hyps])
    members = [score_batch(m, forced, keep_attention=True) for m in models]
    for k, hyp in enumerate(hyps):
        steps = hyp.attention.size(0)  # the EOS step is kept only when greedy produced EOS
        mean = (members[0][k].attention[:steps] + members[1][k].attention[:steps]) / 2
        assert torch.allclose(hyp.attention, mean, atol=1e-5)


def test_an_ensemble_with_a_member_without_attention_keeps_none(ckpt):
    ensemble, tokenizer, _ = load_models([ckpt["a"], ckpt["plain"]], CPU)
    assert not ensemble.has_attention
    with pytest.raises(ValueError, match="model.attention=none"):
        translate_batch(ensemble, make_batch(tokenizer.encode_src(SOURCES[:1])), DecodeConfig(), keep_attention=True)


def test_different_vocabularies_are_refused_naming_both_checkpoints(ckpt, capsys, monkeypatch):
    with pytest.raises(CheckpointError) as error:
        load_models([ckpt["a"], ckpt["b"], ckpt["other_vocab"]], CPU)
    message = str(error.value)
    assert f"cannot ensemble {ckpt['a']} and {ckpt['other_vocab']}" in message
    assert "source and target SentencePiece models differ" in message
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"der Hund .\n")))
    assert translate.main([str(ckpt["a"]), str(ckpt["other_vocab"]), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("seq2seq.translate: cannot ensemble") and str(ckpt["a"]) in err[0]


def test_translate_and_evaluate_take_several_checkpoints_and_run_folders(ckpt, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(ckpt["b"].read_bytes())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\n".join(SOURCES).encode() + b"\n")))
    assert translate.main([str(ckpt["a"]), str(run), "--device", "cpu", "--beam-size", "2", "--max-len-a", "0.5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(SOURCES)
    src, ref = tmp_path / "src.de", tmp_path / "ref.en"
    src.write_text("der Hund .\ndie Katze .\n", encoding="utf-8")
    ref.write_text("the dog .\nthe cat .\n", encoding="utf-8")
    args = [str(ckpt["a"]), str(run), "--src", str(src), "--ref", str(ref), "--device", "cpu", "--json"]
    assert evaluate.main(args) == 0
    assert '"sentences": 2' in capsys.readouterr().out
