"""`seq2seq.train`'s messages: a misspelt key, a bad value, and what a run reports when it is short."""

from __future__ import annotations

import sys
import time

import pytest

from seq2seq import train as train_entry
from seq2seq.training.tensorboard import Throughput

from .conftest import cli


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`python -m seq2seq.train ARGS` in this process, for errors found before Hydra starts: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["seq2seq.train", *args])
    with pytest.raises(SystemExit) as stopped:
        train_entry.main()
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return stopped.value.code, captured.err


@pytest.mark.parametrize("override", ["train.lr_rate=1", "+train.lr_rate=1"])
def test_a_misspelt_key_is_one_line_naming_the_closest_key(tmp_path, monkeypatch, capsys, override):
    run_dir = tmp_path / "run"
    code, err = run_main(monkeypatch, capsys, override, f"hydra.run.dir={run_dir}")
    assert code == 2 and "+train.lr_rate" not in err
    assert err.strip() == "seq2seq.train: config error: unknown config key train.lr_rate; did you mean train.lr?"
    assert not run_dir.exists()


def test_a_wrongly_typed_value_is_refused_before_the_run_starts(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    code, err = run_main(monkeypatch, capsys, "+experiment=gru", "train.lr=fast", f"hydra.run.dir={run_dir}")
    assert code == 2 and not run_dir.exists()
    assert err.strip() == (
        "seq2seq.train: config error: train.lr=fast: Value 'fast' of type 'str' could not be converted to Float"
    )


def test_a_config_error_stops_before_the_data_reaches_stderr_and_leaves_no_run_folder(tmp_path):
    run_dir = tmp_path / "outputs" / "run"
    proc = cli("train", "train.teacher_forcing_ratio=1.5", "data.dir=/nonexistent", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert "seq2seq.train: config error: train.teacher_forcing_ratio must be in [0.0, 1.0], got 1.5" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "nonexistent" not in proc.stderr + proc.stdout  # never got as far as the data
    assert not run_dir.exists()  # nothing for seq2seq.report to list as an unfinished run


def test_tokens_per_sec_of_a_run_shorter_than_one_log_window_is_measured_not_zero():
    meter = Throughput()
    assert meter.summary() is None  # nothing trained: no number rather than 0
    meter.add(tokens=500, loss=1000.0)
    time.sleep(0.01)
    rate = meter.summary()
    assert rate is not None and 0 < rate < 500 / 0.01
    loss, window = meter.close_window()
    assert loss == 2.0 and window > 0 and meter.summary() == round(window, 1)
