"""benchmarks/gpu_check.py in its dry mode: every step of the GPU check run on the CPU, tiny, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import BENCHMARKS, REPO

pytestmark = pytest.mark.slow  # trains in subprocesses, starts a server


def test_the_dry_run_passes_every_step(tmp_path):
    out = tmp_path / "gpu_check.json"
    command = [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--dry-run", "--work-dir", str(tmp_path / "work")]
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    steps = [row["step"] for row in report["steps"]]
    assert all(row["ok"] for row in report["steps"]), report["steps"]
    for wanted in ("train fp32", "torchrun, 1 process", "translate (greedy)", "evaluate (beam 5)", "export (ONNX)"):
        assert wanted in steps
    assert any(s.startswith("serve") for s in steps) and any(s.startswith("portable") for s in steps)
    assert "| step | result | figure |" in done.stdout


def test_without_a_gpu_the_real_run_says_so():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--data-dir", "x"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode != 0 and "no CUDA device" in done.stderr
