"""Interruption and resume: a real SIGTERM, then train.resume=auto, gives bitwise the same weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from .conftest import REPO, cli, tiny_overrides

pytestmark = pytest.mark.slow  # trains in a subprocess (or under torchrun, or starts a server)

STEPS = 12


def overrides(run_dir, cache, insight=False):
    return [
        *tiny_overrides(cache, pairs=600, steps=STEPS, insight=insight),
        "train.validate_every=4",  # validations in both halves: the plateau scheduler's state matters
        "train.lr_patience=0",
        "train.teacher_forcing_ratio=0.5",  # the teacher-forcing generator's state matters
        "model.dropout=0.3",  # the global RNG's state matters
        "train.threads=1",
        f"hydra.run.dir={run_dir}",
    ]


def interrupt(args, at_step: int, signum: int) -> tuple[int, str]:
    """Start a training run, send it `signum` once it logs step `at_step`, return (exit code, output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq.train", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    for line in proc.stdout:
        output.append(line)
        if f"step {at_step}  epoch" in line:
            proc.send_signal(signum)
            break
    output.extend(proc.stdout)
    return proc.wait(timeout=300), "".join(output)


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def test_sigterm_then_resume_gives_bitwise_identical_parameters(tmp_path, spm_cache):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    # the insight probe runs at each validation: it must not disturb what resume restores
    done = cli("train", *overrides(straight, spm_cache, insight=True))
    assert done.returncode == 0, done.stderr[-2000:]

    code, log = interrupt(overrides(interrupted, spm_cache, insight=True), STEPS // 2, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, log[-2000:]
    assert "SIGTERM: stopped at step" in log and "train.resume=auto" in log
    stopped = weights(interrupted)
    assert STEPS // 2 <= stopped["step"] < STEPS

    resumed = cli("train", *overrides(interrupted, spm_cache, insight=True), "train.resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at step" in resumed.stdout + resumed.stderr
    assert "encoded pairs from the cache" in resumed.stdout + resumed.stderr  # exact with the cached arrays too

    a, b = weights(straight), weights(interrupted)
    assert a["step"] == b["step"] == STEPS
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for name, tensor in a["optimizer"]["state"].items():  # Adam's moments too
        assert all(torch.equal(v, b["optimizer"]["state"][name][k]) for k, v in tensor.items())
    without_time = lambda rows: [{k: v for k, v in r.items() if k != "minutes"} for r in rows]  # noqa: E731
    assert without_time(a["train_state"]["history"]) == without_time(b["train_state"]["history"])


def test_sigint_stops_at_a_step_boundary_and_saves_last(tmp_path, spm_cache):
    run_dir = tmp_path / "run"
    code, log = interrupt([*overrides(run_dir, spm_cache), "train.max_steps=1000"], 2, signal.SIGINT)
    assert code == 128 + signal.SIGINT, log[-2000:]
    assert "SIGINT: stopped at step" in log
    assert 2 <= weights(run_dir)["step"] < 1000


def test_resume_refuses_a_changed_model_and_allows_training_keys(tmp_path, spm_cache):
    run_dir = tmp_path / "run"
    first = cli("train", *overrides(run_dir, spm_cache))
    assert first.returncode == 0, first.stderr[-2000:]
    refused = cli("train", *overrides(run_dir, spm_cache), "train.resume=auto", "model.hidden_size=24")
    assert refused.returncode == 2
    assert "model.hidden_size: 16 -> 24" in refused.stdout + refused.stderr
    more = cli("train", *overrides(run_dir, spm_cache), "train.resume=auto", f"train.max_steps={STEPS + 2}")
    assert more.returncode == 0, more.stderr[-2000:]
    assert f"train.max_steps: {STEPS} -> {STEPS + 2}" in more.stdout + more.stderr
    assert weights(run_dir)["step"] == STEPS + 2


def test_resume_auto_without_a_checkpoint_starts_fresh(tmp_path, spm_cache):
    proc = cli("train", *overrides(tmp_path / "new", spm_cache), "train.resume=auto", "train.max_steps=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "starting a new run" in proc.stdout + proc.stderr


def test_resume_from_a_broken_file_is_one_clear_error(tmp_path, spm_cache):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x80\x04 truncated")
    proc = cli("train", *overrides(tmp_path / "run", spm_cache), f"train.resume={broken}")
    assert proc.returncode == 2
    assert "broken.pt" in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr
