"""translate and evaluate: a wrong argument is one line on stderr naming it, no traceback, no unsafe advice."""

from __future__ import annotations

import io
import logging
import pickle
import sys
import warnings
from pathlib import Path

import pytest
import torch

from seq2seq import evaluate, translate

from .conftest import REPO
from .tiny_models import tiny_checkpoint, tiny_tokenizer

UNSAFE = "weights_only"  # torch's advice to load with weights_only=False would run whatever code a file holds


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder holding a tiny untrained `checkpoints/best.pt`, as `seq2seq.train` leaves one."""
    run = tmp_path_factory.mktemp("run")
    tokenizer = tiny_tokenizer(vocab_size=120, joint=True, pairs=200)
    tiny_checkpoint(run / "checkpoints" / "best.pt", tokenizer, seed=0, decode={"max_len_b": 3})
    (run / "src.de").write_text("der Hund .\ndie Katze .\n", encoding="utf-8")
    (run / "ref.en").write_text("the dog .\nthe cat .\n", encoding="utf-8")
    return run


def one_line(err: str, first_words: str) -> str:
    """The one stderr line, after checking that it starts with `first_words` and holds nothing unsafe."""
    assert "Traceback" not in err and UNSAFE not in err and "Warning" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(first_words), lines[0]
    return lines[0]


def run_translate(args: list, stdin: str, monkeypatch, capsys) -> tuple[int, str, str, list]:
    """translate.main in this process: (exit status, stdout, stderr, the warnings it raised)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        status = translate.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err, raised


# ------------------------------------------------------------------ a file that is not a checkpoint
def test_a_text_file_given_as_checkpoint(monkeypatch, capsys):
    status, out, err, raised = run_translate([REPO / "README.md"], "Hund\n", monkeypatch, capsys)
    assert status == 2 and out == "" and not raised
    line = one_line(err, f"seq2seq.translate: {REPO / 'README.md'}: not a seq2seq checkpoint (a text file")
    assert len(line) < 160 + len(str(REPO))


def test_a_plain_pickle_given_as_checkpoint_warns_nothing(tmp_path, monkeypatch, capsys):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"a": object()}, protocol=4))
    status, _, err, raised = run_translate([path], "Hund\n", monkeypatch, capsys)
    assert status == 2 and not raised, [str(w.message) for w in raised]
    one_line(err, f"seq2seq.translate: {path}: not a seq2seq checkpoint (a plain pickle file")


# ------------------------------------------------------------------ a run folder
def test_a_run_folder_means_its_best_checkpoint(run_dir, monkeypatch, capsys, caplog):
    caplog.set_level(logging.INFO, logger="seq2seq.run_folders")
    status, out, err, _ = run_translate([run_dir, "--device", "cpu"], "der Hund .\n", monkeypatch, capsys)
    assert status == 0, err
    assert len(out.splitlines()) == 1
    assert f"{run_dir} is a folder: using {run_dir / 'checkpoints' / 'best.pt'}" in caplog.text


def test_evaluate_takes_a_run_folder_too(run_dir, capsys, caplog):
    caplog.set_level(logging.INFO, logger="seq2seq.run_folders")
    args = [str(run_dir), "--src", str(run_dir / "src.de"), "--ref", str(run_dir / "ref.en"), "--device", "cpu"]
    assert evaluate.main([*args, "--json"]) == 0
    assert '"sentences": 2' in capsys.readouterr().out
    assert f"using {run_dir / 'checkpoints' / 'best.pt'}" in caplog.text


@pytest.mark.parametrize("tool", [translate, evaluate])
def test_a_folder_without_a_checkpoint(tool, run_dir, tmp_path, capsys):
    args = [str(tmp_path), "--src", str(run_dir / "src.de"), "--ref", str(run_dir / "ref.en")]
    assert tool.main(args if tool is evaluate else args[:1]) == 2
    one_line(
        capsys.readouterr().err,
        f"{tool.__name__}: {tmp_path} is a folder, not a checkpoint file, and no checkpoint was found below it; "
        "pass a run's best.pt: python -m seq2seq.train writes them to outputs/DATE/TIME/checkpoints/",
    )


# ------------------------------------------------------------------ --device
@pytest.mark.parametrize("tool", [translate, evaluate])
def test_device_cuda_without_cuda_names_the_option(tool, run_dir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = [str(run_dir), "--device", "cuda", "--src", str(run_dir / "src.de"), "--ref", str(run_dir / "ref.en")]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"der Hund .\n")))
    assert tool.main(args if tool is evaluate else args[:3]) == 2
    err = capsys.readouterr().err
    one_line(err, f"{tool.__name__}: --device cuda but no CUDA device is available; use --device auto or --device cpu")
    assert "train.device" not in err


# ------------------------------------------------------------------ evaluate's --src and --ref
@pytest.mark.parametrize("option", ["--src", "--ref"])
@pytest.mark.parametrize("problem", ["missing", "folder"])
def test_evaluate_names_the_file_argument_and_its_problem(option, problem, run_dir, tmp_path, capsys):
    bad = tmp_path / "nowhere.txt" if problem == "missing" else tmp_path
    files = {"--src": str(run_dir / "src.de"), "--ref": str(run_dir / "ref.en"), option: str(bad)}
    assert evaluate.main([str(run_dir), *(x for pair in files.items() for x in pair)]) == 2
    expected = "no such file" if problem == "missing" else "is a folder, not a file"
    line = one_line(capsys.readouterr().err, f"seq2seq.evaluate: {option} {bad}: {expected}")
    assert "Errno" not in line


def test_evaluate_non_utf8_reference_names_file_and_line(run_dir, tmp_path, capsys):
    ref = tmp_path / "ref.en"
    ref.write_bytes(b"the dog .\nthe \xff cat .\n")
    assert evaluate.main([str(run_dir), "--src", str(run_dir / "src.de"), "--ref", str(ref)]) == 2
    one_line(capsys.readouterr().err, f"seq2seq.evaluate: {ref}, line 2: not UTF-8")


def test_evaluate_refuses_an_unwritable_output_before_decoding(run_dir, tmp_path, capsys):
    args = [str(run_dir), "--src", str(run_dir / "src.de"), "--ref", str(run_dir / "ref.en"), "--output"]
    assert evaluate.main([*args, str(tmp_path)]) == 2
    one_line(capsys.readouterr().err, f"seq2seq.evaluate: --output {tmp_path}: is a folder, not a file")
