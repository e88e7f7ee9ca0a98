"""The commands as Unix filters, and the stumbles of a newcomer using them: a reader that closes standard output
early (`| head -1`), sentences typed at a terminal, an input file given where a checkpoint is expected, a folder
that holds no checkpoint, and `--device mps` where there is no MPS."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from seq2seq import translate
from seq2seq.checkpoint import CheckpointError, is_text_file
from seq2seq.config import ConfigError
from seq2seq.device import resolve_device
from seq2seq.files import stdout_may_close
from seq2seq.results import CheckpointScores, RunResults, SearchScores, TrainSummary, ValidSummary
from seq2seq.run_folders import checkpoint_path

from .conftest import REPO
from .tiny_models import corpus_lines, tiny_checkpoint, tiny_tokenizer

NOISE = ("Traceback", "BrokenPipe", "Exception ignored")  # what a closed pipe must not print


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Two tiny untrained checkpoints (same tokenizer) and a German input file of 40 lines."""
    folder = tmp_path_factory.mktemp("filter")
    tokenizer = tiny_tokenizer()
    src, hyp = corpus_lines("val", 40)
    (folder / "input.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (folder / "hyp.en").write_text("\n".join(hyp) + "\n", encoding="utf-8")
    return {
        "a": tiny_checkpoint(folder / "a.pt", tokenizer, seed=0),
        "b": tiny_checkpoint(folder / "b.pt", tokenizer, seed=1),
        "input": folder / "input.de",
        "hyp": folder / "hyp.en",
        "folder": folder,
    }


def one_line(err: str) -> str:
    """The one line on standard error, with no traceback."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------------------- 1. a closed pipe


def same_file(fd: int, path: str) -> bool:
    mine, other = os.fstat(fd), os.stat(path)
    return (mine.st_dev, mine.st_ino, mine.st_rdev) == (other.st_dev, other.st_ino, other.st_rdev)


def test_stdout_may_close_ends_the_block_quietly_and_points_stdout_at_devnull(monkeypatch):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone: the next write to the pipe fails with EPIPE
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115  (closed below, as the interpreter would)
    monkeypatch.setattr(sys, "stdout", stream)
    reached = []
    with stdout_may_close():
        stream.write("buffered, not yet written\n")  # fits the buffer: only the flush at the end fails
        reached.append("inside")
    reached.append("after")
    assert reached == ["inside", "after"]
    assert same_file(write_end, os.devnull)
    stream.write("more\n")
    stream.close()  # the interpreter's final flush: what is left goes to the null device, no error

    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115
    monkeypatch.setattr(sys, "stdout", stream)
    with stdout_may_close():
        stream.write("x" * 100_000)  # more than the buffer: fails at once, and the rest of the block is skipped
        reached.append("skipped")
    assert reached == ["inside", "after"] and same_file(write_end, os.devnull)
    stream.close()

    monkeypatch.setattr(sys, "stdout", io.StringIO())  # no file descriptor to redirect: nothing happens
    with stdout_may_close():
        raise BrokenPipeError
    with pytest.raises(ValueError), stdout_may_close():  # any other error is not its business
        raise ValueError("not a pipe")


def small_pipe() -> tuple[int, int]:
    """A pipe holding at most one page where Linux allows it, so a command's output fills it at once."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    return read_end, write_end


def first_line_then_close(module: str, *args: object, first: bytes = b"", rest: bytes = b"") -> tuple[int, str, bytes]:
    """Run `python -m seq2seq.MODULE ARGS` with its standard output a pipe; feed `first` on standard input, read
    one line of output, close the pipe, then feed `rest` and end the input. (exit status, stderr, the line)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}
    read_end, write_end = small_pipe()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-m", f"seq2seq.{module}", *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=write_end,
            stderr=err,
            env=env,
            cwd=REPO,
        )
        os.close(write_end)
        try:
            process.stdin.write(first)
            process.stdin.flush()
            with open(read_end, "rb") as out:
                line = out.readline()
            with contextlib.suppress(BrokenPipeError):  # the command may be gone already
                process.stdin.write(rest)
                process.stdin.close()
            status = process.wait(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
        err.seek(0)
        return status, err.read().decode("utf-8", "replace"), line


def assert_quiet(status: int, err: str, line: bytes) -> None:
    assert line.endswith(b"\n"), (line, err)
    assert status == 0, err
    for word in NOISE:
        assert word not in err, err


@pytest.mark.slow
def test_translate_into_a_pipe_closed_after_the_first_line(files):
    src = files["input"].read_bytes().splitlines(keepends=True)
    # --chunk-size 1: the first line is translated before the pipe closes, the second one after it
    status, err, line = first_line_then_close(
        "translate", files["a"], "--device", "cpu", "--chunk-size", "1", first=src[0], rest=b"".join(src[1:] * 5)
    )
    assert_quiet(status, err, line)


@pytest.mark.slow
def test_score_into_a_pipe_closed_after_the_first_line(files, tmp_path):
    src, hyp = (files[name].read_bytes() * 50 for name in ("input", "hyp"))  # 2,000 lines: far more than a pipe
    (tmp_path / "src.de").write_bytes(src)
    (tmp_path / "hyp.en").write_bytes(hyp)
    args = [files["a"], "--src", tmp_path / "src.de", "--hyp", tmp_path / "hyp.en", "--device", "cpu", "--json"]
    status, err, line = first_line_then_close("score", *args)
    assert_quiet(status, err, line)
    assert set(json.loads(line)) == {"log_prob", "average", "length", "token_log_probs"}


def fake_job(job: Path, label: str, validations: int) -> None:
    """A finished Hydra job folder, as seq2seq.report reads it, with a long validation history."""
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- model.cell={label}\n")
    (job / ".hydra" / "config.yaml").write_text(f"model:\n  cell: {label}\n  attention: bahdanau\n")
    history = [{"step": 10 * i, "minutes": i / 10, "bleu": 1.0} for i in range(1, validations + 1)]
    search = SearchScores(1, 1.0, 2.0, "bleu-signature", "chrf-signature", 100.0)
    results = RunResults(
        CheckpointScores(search, search),
        ValidSummary(1.0, 10, history),
        TrainSummary(10 * validations, 1, 1.0, 2.0, 1234, 5000.0, "cpu"),
        "checkpoints/best.pt",
    )
    results.save(job / "results.json")


@pytest.mark.slow
def test_report_json_into_a_pipe_closed_after_the_first_line(tmp_path):
    for job, cell in (("0", "gru"), ("1", "lstm")):
        fake_job(tmp_path / job, cell, validations=3000)  # a JSON of some 600 kB
    status, err, line = first_line_then_close("report", tmp_path, "--json")
    assert_quiet(status, err, line)
    assert line == b"[\n"
    assert not (tmp_path / "valid_bleu_vs_time.png").exists()


# ----------------------------------------------------------------------------- 2. typed at a terminal


class Terminal:
    """Standard input as a terminal: `isatty()` is True, and before it gives line N+1 its `buffer` notes how many
    lines the output already holds (without flushing it: only what translate flushed counts)."""

    def __init__(self, lines: list[str], output: io.BytesIO) -> None:
        self.lines, self.output, self.seen = lines, output, []

    def isatty(self) -> bool:
        return True

    @property
    def buffer(self) -> Iterator[bytes]:
        for line in self.lines:
            self.seen.append(self.output.getvalue().count(b"\n"))
            yield line.encode("utf-8") + b"\n"


def translate_at_a_terminal(args: list, lines: list[str], monkeypatch, capsys) -> tuple[int, list[int], str, str]:
    """translate.main with a terminal as standard input: (status, output lines seen before each input line,
    stdout, stderr)."""
    output = io.BytesIO()
    terminal = Terminal(lines, output)
    monkeypatch.setattr(sys, "stdin", terminal)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(output, encoding="utf-8"))
    status = translate.main([str(a) for a in args])
    sys.stdout.flush()
    return status, terminal.seen, output.getvalue().decode("utf-8"), capsys.readouterr().err


def test_a_terminal_gets_each_translation_before_its_next_line_is_read(files, capsys, monkeypatch):
    lines = ["der Hund .", "die Katze .", "", "ein Mann ."]
    status, seen, out, err = translate_at_a_terminal([files["a"], "--device", "cpu"], lines, monkeypatch, capsys)
    assert status == 0, err
    assert seen == [0, 1, 2, 3]  # line N+1 is read only once N translations are out, flushed
    assert len(out.splitlines()) == 4
    hint = (
        "seq2seq.translate: reading sentences from the terminal, one per line; Ctrl-D ends "
        f"(pipe a file: python -m seq2seq.translate {files['a']} --device cpu < input.txt)"
    )
    assert hint in err.splitlines()


def test_chunk_size_given_is_kept_at_a_terminal(files, capsys, monkeypatch):
    args = [files["a"], "--device", "cpu", "--chunk-size", "2"]
    status, seen, out, err = translate_at_a_terminal(args, ["a", "b", "c", "d", "e"], monkeypatch, capsys)
    assert status == 0, err
    assert seen == [0, 0, 2, 2, 4] and len(out.splitlines()) == 5
    assert "reading sentences from the terminal" in err


def test_no_hint_when_input_is_a_file_or_pipe(files, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"der Hund .\n")))
    assert translate.main([str(files["a"]), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and "terminal" not in err


def test_chunk_size_must_be_positive(files, capsys):
    assert translate.main([str(files["a"]), "--chunk-size", "0"]) == 2
    assert one_line(capsys.readouterr().err) == "seq2seq.translate: --chunk-size must be at least 1, got 0"


def test_help_documents_chunk_size(capsys):
    with pytest.raises(SystemExit):
        translate.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: 1000, so a large file streams; 1 when standard input is a terminal" in help_text
    assert "The sentences come from standard input, one per line: python -m seq2seq.translate CHECKPOINT" in help_text


# ----------------------------------------------------------------------------- 3. the input file as a checkpoint


def test_an_input_file_after_the_checkpoint_says_translate_reads_standard_input(files, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    checkpoint, text = str(files["a"]), str(files["input"])
    assert translate.main([checkpoint, text]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert one_line(err) == (
        f"seq2seq.translate: {text} is a text file, not a checkpoint; translate reads standard input: "
        f"python -m seq2seq.translate {checkpoint} < {text}"
    )
    assert translate.main([checkpoint, str(files["b"]), text, "--beam-size", "2"]) == 2  # the options are kept
    assert one_line(capsys.readouterr().err).endswith(
        f"python -m seq2seq.translate {checkpoint} {files['b']} --beam-size 2 < {text}"
    )


def test_is_text_file(files, tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert is_text_file(files["input"])
    assert not is_text_file(files["a"])  # a checkpoint (a zip archive)
    assert not is_text_file(tmp_path / "empty.txt") and not is_text_file(tmp_path / "missing.de")
    assert not is_text_file(tmp_path)


def test_two_checkpoints_still_decode_as_an_ensemble(files, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"der Hund .\n")))
    assert translate.main([str(files["a"]), str(files["b"]), "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


# ----------------------------------------------------------------------------- 4. a folder without checkpoints


def touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 not loaded")
    os.utime(path, (mtime, mtime))
    return path


def test_a_folder_of_runs_lists_their_checkpoints_newest_first(tmp_path, files, capsys):
    outputs = tmp_path / "outputs"
    old = outputs / "2026-01-01" / "10-00-00" / "checkpoints"
    touch(old / "last.pt", 1000), touch(old / "step_4.pt", 1000)
    best = touch(old / "best.pt", 900)
    training = touch(outputs / "2026-01-02" / "09-00-00" / "checkpoints" / "last.pt", 2000)  # no best.pt yet
    touch(outputs / ".cache" / "checkpoints" / "best.pt", 3000)  # hidden: left out
    with pytest.raises(CheckpointError) as raised:
        checkpoint_path(outputs)
    assert str(raised.value) == (
        f"{outputs} is a folder, not a checkpoint file; checkpoints below it, newest first: {training}, {best}"
    )
    sweep = outputs / "multirun" / "2026-01-03" / "08-00-00"
    for job in range(4):  # a multirun below it: one level deeper
        touch(sweep / str(job) / "checkpoints" / "best.pt", 3000 + job)
    with pytest.raises(CheckpointError) as raised:
        checkpoint_path(outputs)
    newest = ", ".join(str(sweep / job / "checkpoints" / "best.pt") for job in ("3", "2", "1"))
    assert str(raised.value).endswith(f"newest first: {newest} (and 3 more)")
    assert translate.main([str(outputs)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"seq2seq.translate: {outputs} is a folder, not a checkpoint file; checkpoints below")
    listed = line.split("newest first: ")[1].split(" (and")[0].split(", ")
    assert len(listed) == 3 and all(Path(path).is_file() for path in listed)


def test_a_folder_without_any_checkpoint_says_where_training_writes_them(tmp_path, capsys):
    data = tmp_path / "synth_de_en"
    for name in ("train.de", "train.en", "cache/spm.model"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text("Hund\n")
    expected = (
        f"{data} is a folder, not a checkpoint file, and no checkpoint was found below it; pass a run's best.pt: "
        "python -m seq2seq.train writes them to outputs/DATE/TIME/checkpoints/"
    )
    with pytest.raises(CheckpointError) as raised:
        checkpoint_path(data)
    assert str(raised.value) == expected
    assert str(data / "checkpoints") not in expected
    assert translate.main([str(data)]) == 2
    assert one_line(capsys.readouterr().err) == f"seq2seq.translate: {expected}"


def test_a_moved_run_folder_uses_its_own_test_model(tmp_path):
    run = tmp_path / "moved"
    touch(run / "checkpoints" / "best.pt", 1000)
    averaged = touch(run / "checkpoints" / "averaged.pt", 1000)
    fake_job(tmp_path / "job", "gru", validations=1)
    results = json.loads((tmp_path / "job" / "results.json").read_text())
    results["checkpoint"] = "/elsewhere/checkpoints/averaged.pt"  # where it was trained
    (run / "results.json").write_text(json.dumps(results))
    assert checkpoint_path(run) == averaged


# ----------------------------------------------------------------------------- 5. --device mps without MPS


def test_device_mps_without_mps_names_the_option(files, capsys, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError) as raised:
        resolve_device("mps", "--device")
    assert str(raised.value) == "--device mps but Apple's MPS is not available here; use --device auto or --device cpu"
    with pytest.raises(ConfigError, match=r"^train.device=mps but Apple's MPS is not available here; use train"):
        resolve_device("mps")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"der Hund .\n")))
    assert translate.main([str(files["a"]), "--device", "mps"]) == 2
    assert one_line(capsys.readouterr().err) == (
        "seq2seq.translate: --device mps but Apple's MPS is not available here; use --device auto or --device cpu"
    )
