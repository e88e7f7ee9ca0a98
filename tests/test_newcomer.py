"""What a newcomer meets first: a mistyped experiment or preset, a results.json written whole, the console
scripts."""

from __future__ import annotations

import os
import re
import socket
import stat
import sys
from pathlib import Path

import pytest

from seq2seq import train as train_entry
from seq2seq.results import CheckpointScores, RunResults, SearchScores, TrainSummary, ValidSummary

from .conftest import REPO
from .tiny_models import corpus_lines, tiny_checkpoint, tiny_tokenizer


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`python -m seq2seq.train ARGS` in this process, for errors found before Hydra starts: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["seq2seq.train", *args])
    with pytest.raises(SystemExit) as stopped:
        train_entry.main()
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+experiment=gruu", "no experiment named 'gruu' in conf/experiment/; did you mean +experiment=gru?"),
        ("data=multi31k", "no data named 'multi31k' in conf/data/; did you mean data=multi30k?"),
        ("+experiment=gru,lstmm", "no experiment named 'lstmm' in conf/experiment/; did you mean +experiment=lstm?"),
        ("decode=nucleus", "no decode named 'nucleus' in conf/decode/; known: beam, greedy"),
    ],
)
def test_a_missing_config_group_choice_is_one_line_and_exit_status_2(tmp_path, monkeypatch, capsys, override, message):
    """Hydra's own refusal is several lines and exit status 1; ours names the closest choice and all of them."""
    run_dir = tmp_path / "run"
    code, err = run_main(monkeypatch, capsys, override, f"hydra.run.dir={run_dir}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not run_dir.exists()
    assert err.startswith(f"seq2seq.train: config error: {message}")


def test_results_json_is_written_whole_and_readable_by_others(tmp_path, monkeypatch):
    """Atomically (a crash leaves the old file or the new one), readable by others (mode 0644 under umask 022),
    as a checkpoint is."""
    scores = [SearchScores(beam, bleu, 30.0, "BLEU-SIG", "CHRF-SIG", 10.0) for beam, bleu in ((1, 12.5), (4, 13.5))]
    results = RunResults(
        CheckpointScores(*scores), ValidSummary(10.0, 3), TrainSummary(3, 1, 0.1, 0.2, 1000, None, "cpu"), "best.pt"
    )
    target = tmp_path / "results.json"
    old_umask = os.umask(0o022)
    try:
        results.save(target)
    finally:
        os.umask(old_umask)
    assert RunResults.load(target) == results
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    replaced = []
    monkeypatch.setattr(os, "replace", lambda a, b: replaced.append((a, b)))
    results.save(target)  # written beside it, then renamed over it
    assert len(replaced) == 1 and Path(replaced[0][1]) == target


def test_every_command_has_a_console_script():
    section = (REPO / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    scripts = dict(re.findall(r'^(\S+) = "(\S+)"', section, re.M))
    commands = {"train", "translate", "evaluate", "score", "serve", "report", "shortlist", "export"}
    wanted = {f"seq2seq-{c}": f"seq2seq.{c}:main" for c in commands}
    assert scripts == {**wanted, "seq2seq-portable": "seq2seq.portable.__main__:main"}


def test_serve_on_a_busy_port_says_so_before_loading_anything(tmp_path, capsys):
    from seq2seq import serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert serve.main([str(tmp_path / "missing.pt"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip() == f"seq2seq.serve: port {port} on 127.0.0.1 is in use (another server?); pick another with --port"
    )


def test_evaluate_hints_at_swapped_files_when_bleu_is_under_1(tmp_path, capsys):
    """A tiny untrained model scores near 0 whatever the files: the hint names both files and the languages."""
    from seq2seq import evaluate

    checkpoint = tiny_checkpoint(tmp_path / "model.pt", tiny_tokenizer(), seed=0)
    src, tgt = corpus_lines("test", 4)
    (tmp_path / "src.de").write_text("".join(s + "\n" for s in src), encoding="utf-8")
    (tmp_path / "ref.en").write_text("".join(t + "\n" for t in tgt), encoding="utf-8")
    args = [str(checkpoint), "--src", str(tmp_path / "src.de"), "--ref", str(tmp_path / "ref.en"), "--device", "cpu"]
    assert evaluate.main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("BLEU = ")
    hint = f"is --src {tmp_path / 'src.de'} in de and --ref {tmp_path / 'ref.en'} in en, the model's languages (de->en)"
    assert hint in captured.err


def test_shortlist_help_shows_its_defaults(capsys):
    from seq2seq import shortlist

    with pytest.raises(SystemExit):
        shortlist.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "candidates per source subword (default: 20)" in text
    assert "most frequent target subwords always in (default: 300)" in text


def test_evaluate_int8_logs_under_the_loader_not_translate(tmp_path, caplog):
    from seq2seq import evaluate

    checkpoint = tiny_checkpoint(tmp_path / "model.pt", tiny_tokenizer(), seed=0)
    (tmp_path / "src.de").write_text("der Hund .\n", encoding="utf-8")
    (tmp_path / "ref.en").write_text("the dog .\n", encoding="utf-8")
    args = [str(checkpoint), "--src", str(tmp_path / "src.de"), "--ref", str(tmp_path / "ref.en")]
    with caplog.at_level("INFO"):
        assert evaluate.main([*args, "--device", "cpu", "--quantize", "int8"]) == 0
    (record,) = [r for r in caplog.records if "int8" in r.getMessage()]
    assert record.name == "seq2seq.decoding.loading"


def test_checkpoints_and_caches_are_readable_by_other_users(tmp_path):
    """Written atomically through a temporary file, yet with the mode of any new file (0644 under umask 022),
    not mkstemp's 0600: a shared checkpoint or cache must load for another user or a non-root container."""
    from seq2seq.config import DataConfig
    from seq2seq.data.corpus import ParallelCorpus
    from seq2seq.data.encoded import encode_training_set

    old_umask = os.umask(0o022)
    try:
        tokenizer = tiny_tokenizer()
        checkpoint = tiny_checkpoint(tmp_path / "model.pt", tokenizer, seed=0)
        cfg = DataConfig(cache_dir=str(tmp_path / "cache"), preprocess_workers=0)
        encode_training_set(ParallelCorpus(*corpus_lines("train", 20)), tokenizer, cfg)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o644
    (cache,) = (tmp_path / "cache").iterdir()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in cache.iterdir())
