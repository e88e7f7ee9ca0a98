"""Hard alignments from attention: the i-j format, words from "▁", forced decoding's weights, and refusals."""

from __future__ import annotations

import io
import re
import sys

import pytest
import torch

from seq2seq import translate
from seq2seq.config import DecodeConfig
from seq2seq.data.batches import make_batch
from seq2seq.decoding.alignment import format_alignment, hard_alignment, word_alignment, word_indices
from seq2seq.decoding.ensemble import Ensemble
from seq2seq.decoding.inference import attention_for, translate_sentences
from seq2seq.decoding.model_search import translate_batch
from seq2seq.translate import translate_stream

from .tiny_models import corpus_lines, tiny_checkpoint, tiny_model, tiny_tokenizer

CPU = torch.device("cpu")
LINKS = re.compile(r"^(\d+-\d+( \d+-\d+)*)?$")


def test_hard_alignment_takes_the_argmax_over_real_source_pieces():
    weights = torch.tensor(
        [  # 3 output pieces + EOS (rows) over 3 source pieces + EOS (columns)
            [0.1, 0.7, 0.1, 0.1],
            [0.2, 0.1, 0.3, 0.4],  # EOS column highest: the best real piece (2) wins
            [0.6, 0.2, 0.1, 0.1],
            [0.0, 0.0, 0.9, 0.1],  # the EOS output gets no link
        ]
    )
    links = hard_alignment(weights)
    assert links == [(1, 0), (2, 1), (0, 2)]
    assert format_alignment(links) == "1-0 2-1 0-2"
    assert hard_alignment(torch.ones(1, 4)) == [] and hard_alignment(torch.ones(3, 1)) == []


def test_words_begin_at_the_word_start_marker():
    assert word_indices(["▁Der", "▁Hund", "es", "▁", "."]) == [0, 1, 1, 2, 2]
    assert word_indices(["s", "▁the", "<unk>", "▁dog"]) == [0, 1, 2, 2]  # textless pieces join the next word
    assert word_indices(["▁", "▁the", "▁"]) == [0, 0, 0]
    links = [(0, 0), (1, 1), (2, 1), (3, 2)]  # pieces: Der-the Hu-dog nd-dog .-.
    assert word_alignment(links, ["▁Der", "▁Hu", "nd", "."], ["▁the", "▁dog", "."]) == [(0, 0), (1, 1)]
    # source words "Der Hund ." and output words "the dog.": the output word 1 links to source words 1 and 2
    assert word_alignment(links, ["▁Der", "▁Hu", "nd", "▁."], ["▁the", "▁dog", "."]) == [(0, 0), (1, 1), (2, 1)]


@pytest.fixture(scope="module")
def tiny():
    tokenizer = tiny_tokenizer()
    return tiny_model(tokenizer, seed=0)[0], tokenizer


SOURCES = corpus_lines("val", 4)[0]


def test_attention_for_greedy_output_is_what_greedy_search_saw(tiny):
    model, tokenizer = tiny
    batch = make_batch(tokenizer.encode_src(SOURCES))
    hyps = [h for (h,) in translate_batch(model, batch, DecodeConfig(max_len_b=6), keep_attention=True)]
    maps = attention_for(model, tokenizer, SOURCES, [h.tokens for h in hyps], CPU, batch_size=2)
    for source, hyp, attention in zip(SOURCES, hyps, maps):
        assert attention.src_pieces == [*tokenizer.src_pieces(source), "</s>"]
        assert attention.out_pieces == [*tokenizer.tgt_pieces(hyp.tokens), "</s>"]
        assert attention.weights.shape == (len(hyp.tokens) + 1, len(attention.src_pieces))
        assert torch.allclose(attention.weights.sum(dim=1), torch.ones(len(hyp.tokens) + 1), atol=1e-5)
        steps = hyp.attention.size(0)
        assert torch.allclose(attention.weights[:steps], hyp.attention, atol=1e-5)
    text = attention_for(model, tokenizer, ["Der Hund."], ["the dog ."], CPU)[0]  # text is tokenized
    assert text.out_pieces == [*tokenizer.tgt.encode("the dog .", out_type=str), "</s>"]


def test_attention_for_refuses_a_model_without_attention(tiny):
    _, tokenizer = tiny
    plain = tiny_model(tokenizer, seed=1, attention="none")[0]
    for model in (plain, Ensemble([tiny[0], plain])):
        with pytest.raises(ValueError, match=r"model\.attention=none"):
            attention_for(model, tokenizer, ["Der Hund."], ["the dog ."], CPU)


def run(tiny, lines: list[str], alignment: str, **decode) -> list[str]:
    model, tokenizer = tiny
    out = io.StringIO()
    cfg = DecodeConfig(max_len_a=0.0, max_len_b=6, batch_size=3, **decode)
    data = "\n".join(lines).encode() + b"\n"
    translate_stream(model, tokenizer, cfg, io.BytesIO(data), out, chunk_size=2, alignment=alignment)
    return out.getvalue().split("\n")[:-1]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_translate_alignment_pieces(tiny, beam_size):
    model, tokenizer = tiny
    lines = [*SOURCES, "", "Der Hund schläft."]
    out = run(tiny, lines, "pieces", beam_size=beam_size)
    cfg = DecodeConfig(max_len_a=0.0, max_len_b=6, beam_size=beam_size)
    hypotheses = translate_sentences(model, tokenizer, lines, cfg, CPU)
    assert len(out) == len(lines)
    assert out[len(SOURCES)] == " ||| "  # an empty line: no translation, no links
    for source, line, (hyp,) in zip(lines, out, hypotheses):
        text, links = line.split(" ||| ")
        assert text == tokenizer.decode_tgt([hyp.tokens])[0] and LINKS.match(links), line
        pairs = [tuple(map(int, link.split("-"))) for link in links.split()]
        assert [j for _, j in pairs] == list(range(len(hyp.tokens)))  # one link per output piece, in order
        assert all(i < len(tokenizer.src_pieces(source)) for i, _ in pairs)


def test_translate_alignment_words_and_nbest(tiny):
    model, tokenizer = tiny
    lines = [*SOURCES, "Der  Hund , die Katze."]
    for line, source in zip(run(tiny, lines, "words", beam_size=3, nbest=2), lines):
        fields = line.split(" ||| ")
        assert len(fields) == 4  # hypothesis, its links, second hypothesis, its links
        for text, links in (fields[:2], fields[2:]):
            assert LINKS.match(links), line
            pairs = [tuple(map(int, link.split("-"))) for link in links.split()]
            assert all(i < len(source.split()) and j < max(len(text.split()), 1) for i, j in pairs), line


def test_translate_refuses_alignment_without_attention(tiny, tmp_path, capsys, monkeypatch):
    _, tokenizer = tiny
    path = tiny_checkpoint(tmp_path / "plain.pt", tokenizer, seed=1, attention="none")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"der Hund .\n")))
    assert translate.main([str(path), "--alignment", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"seq2seq.translate: --alignment needs attention weights, but {path} has none (model.attention=none)\n"
    )


def test_translate_main_prints_alignments(tiny, tmp_path, capsys, monkeypatch):
    _, tokenizer = tiny
    path = tiny_checkpoint(tmp_path / "attn.pt", tokenizer, seed=0)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"der Hund .\n\ndie Katze .\n")))
    assert translate.main([str(path), "--device", "cpu", "--alignment", "words", "--beam-size", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all(LINKS.match(line.split(" ||| ")[1]) for line in out)
