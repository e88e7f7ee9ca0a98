"""Lexical shortlists (`seq2seq.shortlist`, `--shortlist`): built from co-occurrence, searched over exactly."""

from __future__ import annotations

import copy
import io
import sys

import pytest
import torch
from torch import nn

from seq2seq import evaluate, shortlist, translate
from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import DecodeConfig
from seq2seq.decoding.ensemble import Ensemble
from seq2seq.decoding.inference import translate_sentences
from seq2seq.decoding.lexicon import LexicalShortlist, build_shortlist
from seq2seq.model.quantize import int8_supported, quantize_int8
from seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID

from .tiny_models import corpus_lines, tiny_checkpoint, tiny_model, tiny_tokenizer, write_corpus

CPU = torch.device("cpu")


def test_dice_pairs_each_source_id_with_the_target_id_it_occurs_with():
    # source 4 always comes with target 9, source 5 with target 10; target 11 is everywhere (frequent)
    src = [[4, 6], [4], [5, 6], [5], [4, 5]]
    tgt = [[9, 11], [9, 11], [10, 11], [10, 11, 11], [9, 10, 11]]
    found = build_shortlist(src, tgt, src_vocab_size=8, tgt_vocab_size=12, per_source=2, frequent=1)
    assert found.translations.shape == (8, 2)
    assert found.translations[4, 0] == 9 and found.translations[5, 0] == 10
    assert found.translations[7].tolist() == [EOS_ID, EOS_ID]  # never seen: only EOS
    assert found.frequent.tolist() == [11]
    assert not ({PAD_ID, BOS_ID} & set(found.translations.view(-1).tolist()))


def test_each_sentence_candidates_are_its_source_ids_translations_and_the_frequent_ids():
    translations = torch.tensor([[3, 3], [3, 3], [3, 3], [3, 3], [9, 10], [10, 12], [13, 3]])
    table = LexicalShortlist(translations, frequent=torch.tensor([11, 12]))
    src = torch.tensor([[4, 5, 3], [5, 3, PAD_ID]])  # sentence 0: ids 4 and 5 (and EOS, 3); sentence 1: 5
    found = table.candidates(src, tgt_vocab_size=20)
    assert found.shared.tolist() == [UNK_ID, EOS_ID, 11, 12]  # every sentence's: the frequent ids, EOS and UNK
    assert found.own.shape == found.valid.shape == (2, 2)
    assert found.own[0].tolist() == [9, 10]  # the translations of 4 and 5 that are not shared (12 is)
    assert found.own[1][found.valid[1]].tolist() == [10] and found.valid[1].tolist() == [True, False]
    assert found.ids.tolist()[1][:5] == [UNK_ID, EOS_ID, 11, 12, 10]  # the search's columns: shared, then own
    candidates = set(found.shared.tolist()) | set(found.own[found.valid].tolist())
    assert not ({PAD_ID, BOS_ID, 13} & candidates)  # 13: the translation of source id 6, in no sentence


def full_vocabulary_shortlist(src_vocab: int, tgt_vocab: int) -> LexicalShortlist:
    """Every target id is a candidate: the search must give exactly what the full search gives."""
    return LexicalShortlist(torch.arange(tgt_vocab).repeat(src_vocab, 1), torch.zeros(0, dtype=torch.long))


class WithoutPadBos(nn.Module):
    """An output layer that gives PAD and BOS no probability at all, so that the full search's distribution
    (normalized, then PAD and BOS ruled out) equals the shortlist's (normalized without them)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias  # what a shortlist cuts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias).index_fill(-1, torch.tensor([PAD_ID, BOS_ID]), -1e4)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_shortlist_of_the_whole_vocabulary_finds_what_the_full_search_finds(beam_size):
    tokenizer = tiny_tokenizer()
    model, _ = tiny_model(tokenizer, seed=0)
    model.decoder.output = WithoutPadBos(model.decoder.output)
    src, _ = corpus_lines("val", 12)
    cfg = DecodeConfig(beam_size=beam_size, nbest=beam_size, max_len_b=6, batch_size=5)
    everything = full_vocabulary_shortlist(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    full = translate_sentences(model, tokenizer, src, cfg, CPU)
    listed = translate_sentences(model, tokenizer, src, cfg, CPU, shortlist=everything)
    assert [[h.tokens for h in hyps] for hyps in listed] == [[h.tokens for h in hyps] for hyps in full]
    for hyps, ref in zip(listed, full):
        assert [h.score for h in hyps] == pytest.approx([h.score for h in ref], abs=1e-4)


def test_a_narrow_shortlist_only_ever_produces_each_sentence_candidates():
    tokenizer = tiny_tokenizer()
    model, _ = tiny_model(tokenizer, seed=1)
    src, tgt = corpus_lines("train", 300)
    encoded = tokenizer.encode_src(src), tokenizer.encode_tgt(tgt)
    narrow = build_shortlist(*encoded, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, per_source=2, frequent=3)
    sentences = corpus_lines("val", 6)[0]
    allowed = []
    for ids in tokenizer.encode_src(sentences):
        found = narrow.candidates(torch.tensor([ids]), tokenizer.tgt_vocab_size)
        allowed.append(set(found.shared.tolist()) | set(found.own[found.valid].tolist()))
    assert max(len(a) for a in allowed) < tokenizer.tgt_vocab_size / 2  # a real restriction
    assert len(set.union(*allowed)) > min(len(a) for a in allowed)  # and not the same for every sentence
    ensemble = Ensemble([model, tiny_model(tokenizer, seed=2)[0]]).eval()
    decoders = [model, ensemble] + ([quantize_int8(copy.deepcopy(model))] if int8_supported() else [])
    for decoder in decoders:
        for beam_size in (1, 3):  # batches of 4 and 2 sentences of different lengths: some finish first
            cfg = DecodeConfig(beam_size=beam_size, nbest=beam_size, max_len_b=6, batch_size=4)
            found = translate_sentences(decoder, tokenizer, sentences, cfg, CPU, shortlist=narrow)
            for hyps, own in zip(found, allowed):
                assert all(set(h.tokens) <= own - {EOS_ID} for h in hyps)


def test_the_command_stores_a_shortlist_that_translate_and_evaluate_use(tmp_path, capsys, monkeypatch):
    tokenizer = tiny_tokenizer()
    checkpoint = tiny_checkpoint(tmp_path / "a.pt", tokenizer, seed=0)
    write_corpus(tmp_path, train=300, val=4, test=0)
    train_src, train_tgt = tmp_path / "train.de", tmp_path / "train.en"
    assert translate.main([str(checkpoint), "--shortlist"]) == 2  # none stored yet: says how to add one
    assert "python -m seq2seq.shortlist" in capsys.readouterr().err
    args = [str(checkpoint), "--src", str(train_src), "--tgt", str(train_tgt), "--per-source", "4"]
    assert shortlist.main(args) == 0
    stored = load_checkpoint(checkpoint)["shortlist"]  # weights_only=True
    assert stored["translations"].shape == (tokenizer.src_vocab_size, 4)
    val_src = corpus_lines("val", 4)[0]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(("\n".join(val_src) + "\n").encode())))
    assert translate.main([str(checkpoint), "--shortlist", "--beam-size", "2", "--max-len-b", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(val_src)
    args = [str(checkpoint), "--shortlist", "--src", str(tmp_path / "val.de"), "--ref", str(tmp_path / "val.en")]
    assert evaluate.main(args) == 0
    assert "BLEU" in capsys.readouterr().out


def test_the_command_names_a_corpus_whose_sides_differ_in_length(tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "a.pt", tiny_tokenizer(), seed=0)
    (tmp_path / "s").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "t").write_text("a\n", encoding="utf-8")
    before = checkpoint.read_bytes()
    assert shortlist.main([str(checkpoint), "--src", str(tmp_path / "s"), "--tgt", str(tmp_path / "t")]) == 2
    assert "has 2 lines" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before  # nothing written
