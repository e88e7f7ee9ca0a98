"""int8 decoding (`--quantize int8`): the products stay close to fp32 and every command takes the flag."""

from __future__ import annotations

import copy
import io
import sys

import pytest
import torch
from torch import nn

from seq2seq import evaluate, translate
from seq2seq.config import DecodeConfig
from seq2seq.data.batches import make_batch
from seq2seq.decoding.inference import translate_sentences
from seq2seq.decoding.model_search import score_batch
from seq2seq.model.cells import CELL_CLASSES
from seq2seq.model.quantize import Int8Cell, Int8Linear, int8_supported, quantize_int8

from .tiny_models import corpus_lines, tiny_checkpoint, tiny_model, tiny_tokenizer

pytestmark = pytest.mark.skipif(not int8_supported(), reason="this PyTorch build has no FBGEMM int8 kernels")


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx - exact).abs().max() / exact.abs().max().detach())


def test_int8_linear_is_close_to_the_fp32_linear_for_any_leading_shape():
    torch.manual_seed(0)
    linear = nn.Linear(64, 300)
    x = torch.randn(4, 7, 64)
    linear.requires_grad_(False)
    out = Int8Linear.of(linear)(x)
    assert out.shape == (4, 7, 300)
    assert relative_error(out, linear(x)) < 0.03  # 8-bit weights and inputs: about 1% per product
    assert relative_error(out, linear(x)) > 0  # it really is another computation


@pytest.mark.parametrize("kind", ["gru", "lstm", "rnn"])
def test_int8_cells_follow_the_fp32_cells(kind):
    torch.manual_seed(1)
    cell = CELL_CLASSES[kind][1](32, 48)
    x, h = torch.randn(5, 32), torch.randn(5, 48)
    state = (h, torch.randn(5, 48)) if kind == "lstm" else h
    with torch.no_grad():
        exact, approx = cell(x, state), Int8Cell(kind, cell)(x, state)
    for a, e in zip(approx if kind == "lstm" else [approx], exact if kind == "lstm" else [exact]):
        assert a.shape == e.shape
        assert float((a - e).abs().max()) < 0.05


@pytest.mark.parametrize("settings", [{}, {"cell": "lstm", "attention": "luong_general", "decoder_layers": 2}])
def test_a_quantized_model_scores_like_the_fp32_model(settings):
    tokenizer = tiny_tokenizer()
    model, _ = tiny_model(tokenizer, seed=0, **settings)
    quantized = quantize_int8(copy.deepcopy(model))
    layers = settings.get("decoder_layers", 1)
    query_layer = 0 if settings.get("attention") == "luong_general" else 1
    # output, readout, the attention's query layer (Bahdanau only), and two products per cell
    assert sum(isinstance(m, Int8Linear) for m in quantized.modules()) == 2 + query_layer + 2 * layers
    src, tgt = corpus_lines("val", 8)
    batch = make_batch(tokenizer.encode_src(src), tokenizer.encode_tgt(tgt))
    exact = [s.token_log_probs for s in score_batch(model, batch)]
    approx = [s.token_log_probs for s in score_batch(quantized, batch)]
    diffs = [abs(a - e) for rows in zip(approx, exact) for a, e in zip(*rows)]
    assert 0 < max(diffs) < 0.05
    hyps = translate_sentences(quantized, tokenizer, src, DecodeConfig(beam_size=2, max_len_b=6), torch.device("cpu"))
    assert len(hyps) == len(src)


def test_translate_and_evaluate_take_quantize_int8(tmp_path, capsys, monkeypatch):
    checkpoint = tiny_checkpoint(tmp_path / "a.pt", tiny_tokenizer(), seed=0)
    lines = corpus_lines("val", 5)[0] + [""]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\n".join(lines).encode() + b"\n")))
    assert translate.main([str(checkpoint), "--device", "cpu", "--quantize", "int8", "--max-len-b", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(lines)
    src, ref = tmp_path / "src.de", tmp_path / "ref.en"
    src.write_text("der Hund .\ndie Katze .\n", encoding="utf-8")
    ref.write_text("the dog .\nthe cat .\n", encoding="utf-8")
    args = [str(checkpoint), "--src", str(src), "--ref", str(ref), "--device", "cpu", "--json", "--quantize", "int8"]
    assert evaluate.main(args) == 0
    assert '"sentences": 2' in capsys.readouterr().out


def test_an_unknown_quantization_is_refused(tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "a.pt", tiny_tokenizer(), seed=0)
    with pytest.raises(SystemExit) as exit_info:
        translate.main([str(checkpoint), "--quantize", "int4"])
    assert exit_info.value.code == 2
    assert "--quantize" in capsys.readouterr().err


def test_quantizing_a_model_off_the_cpu_is_refused():
    model, _ = tiny_model(tiny_tokenizer(), seed=0)
    with pytest.raises(RuntimeError, match="CPU only"):
        quantize_int8(model.to("meta"))
