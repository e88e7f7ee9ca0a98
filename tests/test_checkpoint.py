import io
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seq2seq import score, translate
from seq2seq.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint

from .conftest import REPO
from .tiny_models import corpus_lines, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer(joint=True)


def payload_for(tokenizer):
    model, config = tiny_model(tokenizer, seed=0)
    return model, {"model": model.state_dict(), "config": config.to_dict(), "tokenizer": tokenizer.to_dict(), "step": 7}


def test_checkpoint_is_self_contained_and_loads_weights_only(tmp_path, tokenizer):
    model, payload = payload_for(tokenizer)
    path = tmp_path / "best.pt"
    save_checkpoint(path, payload)
    raw = torch.load(path, weights_only=True)  # plain tensors and Python values only
    assert raw["step"] == 7 and isinstance(raw["tokenizer"]["src"], bytes)
    loaded, tok, config, _ = model_from_checkpoint(path)
    assert config.model.hidden_size == 8
    assert tok.encode_src(["der Hund"]) == tokenizer.encode_src(["der Hund"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])
    assert not loaded.training


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED_MARKER",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": Exploit(), "config": {}}, f)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(f"{path}: not a seq2seq checkpoint (a plain pickle file")
    torch.save({"model": Exploit(), "config": {}}, tmp_path / "evil2.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "evil2.pt")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'evil2.pt'}: refused to load: it holds objects other than tensors")
    assert "weights_only" not in message and "\n" not in message  # never torch's advice to load it unsafely
    assert not (tmp_path / "PWNED_MARKER").exists()


class Plain:
    pass


@pytest.mark.parametrize(
    "write",
    [
        lambda path: path.write_text("# seq2seq\n\nA README, not a checkpoint.\n", encoding="utf-8"),
        lambda path: path.write_bytes(pickle.dumps({"a": object()})),
        lambda path: path.write_bytes(pickle.dumps({"model": {}, "config": {}}, protocol=2)),
        lambda path: path.write_bytes(pickle.dumps(Plain())),
        lambda path: torch.save({"model": {}, "config": {}}, path, pickle_protocol=4),
    ],
    ids=["text", "pickle-object", "pickle-dict", "pickle-class", "torch-protocol-4"],
)
def test_foreign_files_are_not_seq2seq_checkpoints_and_warn_nothing(tmp_path, write, recwarn):
    path = tmp_path / "model.pt"
    write(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a seq2seq checkpoint (")
    assert "weights_only" not in message and "\n" not in message and len(message) < len(str(path)) + 120
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_a_folder_is_not_a_checkpoint_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"is a folder, not a checkpoint file$"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("content", "first_words"),
    [
        (b"", "the file is empty, not a checkpoint"),
        (b"hello, I am not a checkpoint", "not a seq2seq checkpoint (a text file"),
        (b"\x00\x01binary", "not a seq2seq checkpoint (unknown file format"),
        (None, "not a readable checkpoint (truncated or foreign file?): "),
    ],
)
def test_truncated_empty_or_foreign_files_give_one_clear_line(tmp_path, tokenizer, content, first_words):
    path = tmp_path / "broken.pt"
    if content is None:  # a real checkpoint cut in half
        save_checkpoint(path, payload_for(tokenizer)[1])
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {first_words}") and "\n" not in message and "weights_only" not in message


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, tokenizer, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload_for(tokenizer)[1])
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {**payload_for(tokenizer)[1], "step": 8})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


WRITER = """
import sys, torch
from seq2seq.checkpoint import save_checkpoint
path = sys.argv[1]
step = 0
while True:
    step += 1
    save_checkpoint(path, {"model": {"w": torch.full((300_000,), float(step))}, "config": {}, "step": step})
    print(step, flush=True)
"""


def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = random.Random(0)
    for _ in range(4):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env, stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip()  # at least one complete save
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        payload = load_checkpoint(path)
        assert torch.all(payload["model"]["w"] == payload["step"])  # one consistent save, never a mix


# ------------------------------------------------------------------ checkpoints of older commits
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("options", "expected"), [(["--beam-size", "1"], "greedy.en"), (["--beam-size", "3", "--nbest", "2"], "beam3.en")]
)
def test_a_checkpoint_of_commit_87b8b7c_translates_as_it_did_then(options, expected, monkeypatch, capsys):
    """Written by the flat layout's code; the same translations, line for line, from today's commands."""
    source = "".join(line + "\n" for line in corpus_lines("test", 20)[0])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(source.encode())))
    assert translate.main([str(FIXTURES / "checkpoint_87b8b7c.pt"), "--device", "cpu", *options]) == 0
    assert capsys.readouterr().out == (FIXTURES / expected).read_text(encoding="utf-8")


def test_a_checkpoint_of_commit_87b8b7c_scores_as_it_did_then(tmp_path, capsys):
    src, tgt = corpus_lines("test", 20)
    (tmp_path / "src.de").write_text("".join(s + "\n" for s in src), encoding="utf-8")
    (tmp_path / "hyp.en").write_text("".join(t + "\n" for t in tgt), encoding="utf-8")
    args = [
        str(FIXTURES / "checkpoint_87b8b7c.pt"),
        "--src",
        str(tmp_path / "src.de"),
        "--hyp",
        str(tmp_path / "hyp.en"),
    ]
    assert score.main([*args, "--device", "cpu"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    expected = [line.split("\t") for line in (FIXTURES / "score.tsv").read_text(encoding="utf-8").splitlines()]
    assert [row[2] for row in rows] == [row[2] for row in expected]  # the lengths, exactly
    # the log-probabilities to 1e-4: another thread count sums the products in another order
    got, want = ([float(x) for row in table for x in row[:2]] for table in (rows, expected))
    assert got == pytest.approx(want, abs=1e-4)
