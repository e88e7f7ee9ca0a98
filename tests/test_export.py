"""ONNX export (python -m seq2seq.export) and the PyTorch-free translator (seq2seq.portable): the same outputs as
PyTorch for every cell and attention, ensembles member by member, a translator that imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq.config import DecodeConfig
from seq2seq.decoding.inference import translate_sentences
from seq2seq.decoding.loading import load_for_decoding
from seq2seq.portable import search as portable

from .conftest import REPO
from .test_search import TableState, table_step
from .tiny_models import corpus_lines, tiny_checkpoint, tiny_tokenizer

SOURCES = [*corpus_lines("test", 12)[0], "", "  "]
SHORT = {"max_len_a": 0.5, "max_len_b": 4}  # untrained models write to the max length: keep outputs short


class TableRows:
    """table_step (tests/test_search.py) as the numpy searches' step and reorder: the caller keeps the state."""

    def __init__(self, rows: int) -> None:
        self.state = TableState([()] * rows)

    def step(self, prev: np.ndarray) -> np.ndarray:
        log_probs, self.state = table_step(torch.from_numpy(prev), self.state)
        return log_probs.numpy()

    def reorder(self, rows: np.ndarray) -> None:
        self.state = self.state.index_select(torch.from_numpy(rows))


def test_the_numpy_searches_follow_the_pytorch_ones_on_a_hand_made_model():
    """Greedy takes A, beam search finds B EOS, with the scores PyTorch's searches give."""
    from seq2seq.decoding.search import beam_search, greedy_search

    table = TableRows(1)
    got = portable.greedy_search(table.step, table.reorder, np.array([5]))[0]
    want = greedy_search(table_step, TableState([()]), torch.tensor([5]))[0]
    assert got.tokens == want.tokens and got.log_prob == pytest.approx(want.log_prob, abs=1e-6)
    table = TableRows(2)
    got_n = portable.beam_search(table.step, table.reorder, np.array([5]), 2, alpha=0.0, nbest=2)[0]
    want_n = beam_search(table_step, TableState([(), ()]), torch.tensor([5]), 2, alpha=0.0, nbest=2)[0]
    assert [h.tokens for h in got_n] == [h.tokens for h in want_n] and got_n[0].tokens != got.tokens
    assert [h.score for h in got_n] == pytest.approx([h.score for h in want_n], abs=1e-6)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def export(folder: Path, checkpoints: list[Path]) -> Path:
    from seq2seq.export import export_onnx

    return export_onnx([str(c) for c in checkpoints], folder)


@pytest.mark.slow  # each export traces the decoder step: seconds
@pytest.mark.parametrize(
    "model",
    [
        {"cell": "gru", "attention": "bahdanau"},
        {"cell": "lstm", "attention": "luong_general", "input_feeding": False, "decoder_layers": 2},
        {"cell": "rnn", "attention": "none", "encoder_layers": 2},
        {"cell": "gru", "attention": "luong_dot", "bidirectional": False},
    ],
)
def test_the_export_translates_as_pytorch_does(tok, tmp_path, model):
    from seq2seq.portable.translator import ExportedTranslator

    checkpoint = tiny_checkpoint(tmp_path / "best.pt", tok, seed=1, decode=SHORT, **model)
    translator = ExportedTranslator(export(tmp_path / "export", [checkpoint]), threads=1)
    pytorch, tokenizer, *_ = load_for_decoding([checkpoint], "cpu")
    for beam in (1, 4):
        cfg = DecodeConfig(beam_size=beam, nbest=min(beam, 2), **SHORT)
        want = translate_sentences(pytorch, tokenizer, SOURCES, cfg, torch.device("cpu"))
        got = translator.translate(SOURCES, beam_size=beam, nbest=min(beam, 2))
        assert [[h.tokens for h in hyps] for hyps in got] == [[h.tokens for h in hyps] for hyps in want]
        for g, w in zip(got, want):
            assert [h.score for h in g] == pytest.approx([h.score for h in w], abs=1e-4)
        assert translator.detokenize(got)[-1] == [""]  # an empty line: an empty translation
    cfg = DecodeConfig(beam_size=4, nbest=2, coverage_penalty=0.3, **SHORT)  # GNMT's coverage penalty too
    if model["attention"] == "none":
        with pytest.raises(ValueError, match="needs a model with attention"):
            translator.translate(SOURCES, beam_size=4, coverage_penalty=0.3)
        return
    want = translate_sentences(pytorch, tokenizer, SOURCES, cfg, torch.device("cpu"))
    got = translator.translate(SOURCES, beam_size=4, nbest=2, coverage_penalty=0.3)
    assert [[h.tokens for h in hyps] for hyps in got] == [[h.tokens for h in hyps] for hyps in want]
    for g, w in zip(got, want):
        assert [h.score for h in g] == pytest.approx([h.score for h in w], abs=1e-4)


@pytest.mark.slow
def test_an_ensemble_exports_member_by_member(tok, tmp_path):
    from seq2seq.portable.translator import ExportedTranslator

    checkpoints = [tiny_checkpoint(tmp_path / f"m{s}.pt", tok, seed=s, decode=SHORT) for s in (1, 2)]
    folder = export(tmp_path / "export", checkpoints)
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["member_0", "member_1"]
    ensemble, tokenizer, *_ = load_for_decoding(checkpoints, "cpu")
    cfg = DecodeConfig(beam_size=3, **SHORT)
    want = translate_sentences(ensemble, tokenizer, SOURCES, cfg, torch.device("cpu"))
    got = ExportedTranslator(folder, threads=1).translate(SOURCES, beam_size=3)
    assert [h[0].tokens for h in got] == [h[0].tokens for h in want]


@pytest.mark.slow
def test_the_portable_command_needs_no_torch(tok, tmp_path):
    """seq2seq.portable with `import torch` made to fail: it translates all the same."""
    checkpoint = tiny_checkpoint(tmp_path / "best.pt", tok, seed=1, decode=SHORT)
    folder = export(tmp_path / "export", [checkpoint])
    blocker = "import sys, runpy; sys.modules['torch'] = None; sys.argv = ['seq2seq.portable', *sys.argv[1:]]; "
    blocker += "runpy.run_module('seq2seq.portable', run_name='__main__')"
    done = subprocess.run(
        [sys.executable, "-c", blocker, str(folder), "--beam-size", "2"],
        input="\n".join(SOURCES[:3]) + "\n\n",
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4 and done.stdout.splitlines()[3] == ""
    refused = subprocess.run(
        [sys.executable, "-m", "seq2seq.portable", str(tmp_path)], input="a\n", capture_output=True, text=True, cwd=REPO
    )
    assert refused.returncode == 2 and "is not an export folder" in refused.stderr


@pytest.mark.slow
def test_translate_takes_an_export_folder(tok, tmp_path, monkeypatch, capsys):
    from .test_cli_errors import run_translate

    checkpoint = tiny_checkpoint(tmp_path / "best.pt", tok, seed=1, decode=SHORT)
    folder = export(tmp_path / "export", [checkpoint])
    text = "\n".join(SOURCES[:4]) + "\n"
    options = ["--beam-size", "3", "--nbest", "2"]
    status, from_export, err, _ = run_translate([folder, *options], text, monkeypatch, capsys)
    assert status == 0, err
    status, from_checkpoint, err, _ = run_translate([checkpoint, *options], text, monkeypatch, capsys)
    assert status == 0 and from_export == from_checkpoint and len(from_export.splitlines()) == 4
    status, _, err, _ = run_translate([folder, "--sampling"], text, monkeypatch, capsys)
    assert status == 2 and "--sampling not available with an export folder" in err
    # the max length, chunk size and device reach the export too, checked as with a checkpoint
    short = ["--max-len-a", "0", "--max-len-b", "2", "--chunk-size", "1"]
    status, from_export, err, _ = run_translate([folder, *options, *short], text, monkeypatch, capsys)
    status_c, from_checkpoint, _, _ = run_translate([checkpoint, *options, *short], text, monkeypatch, capsys)
    assert status == status_c == 0 and from_export == from_checkpoint
    assert all(len(h.split()) <= 2 for line in from_export.splitlines() for h in line.split(" ||| "))
    # evaluate scores an export as it scores the checkpoint
    src, ref = tmp_path / "src.de", tmp_path / "ref.en"
    src.write_text(text, encoding="utf-8")
    ref.write_text("".join(line + "\n" for line in corpus_lines("test", 4)[1]), encoding="utf-8")
    evaluated = {}
    for name, path in (("export", folder), ("checkpoint", checkpoint)):
        command = [sys.executable, "-m", "seq2seq.evaluate", str(path), "--src", str(src), "--ref", str(ref)]
        done = subprocess.run([*command, "--json", "--beam-size", "3"], capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 0, done.stderr[-2000:]
        evaluated[name] = json.loads(done.stdout.splitlines()[-1])
    assert evaluated["export"]["bleu"] == evaluated["checkpoint"]["bleu"] and evaluated["export"]["sentences"] == 4
    for bad, words in ((["--device", "mps"], "--device mps not available"), (["--max-len-b", "-1"], "--max-len-b")):
        status, out, err, _ = run_translate([folder, *bad], text, monkeypatch, capsys)
        assert status == 2 and out == "" and words in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_an_export_never_overwrites_a_folder_that_is_not_one(tok, tmp_path, capsys):
    from seq2seq import export as command

    checkpoint = tiny_checkpoint(tmp_path / "best.pt", tok, seed=1, decode=SHORT)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert command.main([str(checkpoint), "--out", str(tmp_path / "taken")]) == 2
    assert "is not an earlier export" in capsys.readouterr().err
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".taken.*"))  # the staging folder is gone


@pytest.mark.slow
def test_the_server_serves_an_export(tok, tmp_path):
    from fastapi.testclient import TestClient

    from seq2seq import serve
    from seq2seq.serving import app as api
    from seq2seq.serving.onnx_backend import OnnxTranslator

    checkpoint = tiny_checkpoint(tmp_path / "best.pt", tok, seed=1, decode=SHORT)
    translator = OnnxTranslator(export(tmp_path / "export", [checkpoint]), threads=1)
    app = api.create_app(translator, translator.info(), api.Limits(), api.DecodeSettings(1, 1, 0.6, False))
    lines = SOURCES[:3] + [""]
    with TestClient(app) as client:
        response = client.post("/translate", json={"text": lines, "beam_size": 2, "nbest": 2})
        assert response.status_code == 200, response.text
        served = [[h["text"] for h in entry["hypotheses"]] for entry in response.json()["translations"]]
        for body, field in (
            ({"attention": True}, "attention"),
            ({"sampling": True}, "sampling"),
            ({"constraints": [["a"], [], [], []]}, "constraints[0]"),
        ):
            refused = client.post("/translate", json={"text": lines, **body})
            assert refused.status_code == 422 and refused.json()["field"] == field, refused.text
        assert client.get("/info").json()["model"]["cell"] == "gru"
    pytorch, tokenizer, *_ = load_for_decoding([checkpoint], "cpu")
    cfg = DecodeConfig(beam_size=2, nbest=2, **SHORT)
    want = translate_sentences(pytorch, tokenizer, lines, cfg, torch.device("cpu"))
    assert served == [tokenizer.decode_tgt([h.tokens for h in hyps]) for hyps in want]
    assert serve.main([str(tmp_path / "export"), "--backend", "onnx", "--quantize", "int8"]) == 2


@pytest.mark.slow  # builds a virtual environment and installs three packages into it
def test_the_portable_translator_runs_in_an_environment_without_torch(tok, tmp_path):
    """A fresh venv with numpy, onnxruntime and sentencepiece and this package without its dependencies: no torch,
    and the same translations as PyTorch's translate."""
    checkpoint = tiny_checkpoint(tmp_path / "best.pt", tok, seed=1, decode=SHORT)
    folder = export(tmp_path / "export", [checkpoint])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "numpy", "onnxruntime", "sentencepiece"], check=True)
    subprocess.run([*pip, "--no-deps", str(REPO)], check=True)
    assert subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0
    text = "\n".join(SOURCES[:4]) + "\n"
    done = subprocess.run(
        [python, "-m", "seq2seq.portable", str(folder), "--beam-size", "3"],
        input=text,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    pytorch, tokenizer, *_ = load_for_decoding([checkpoint], "cpu")
    want = translate_sentences(pytorch, tokenizer, SOURCES[:4], DecodeConfig(beam_size=3, **SHORT), torch.device("cpu"))
    assert done.stdout.splitlines() == tokenizer.decode_tgt([h[0].tokens for h in want])
